#!/bin/bash
# 8 threads doing random preads of one file through the mount get the same
# bytes as pread on the source, with a RAM tier smaller than the file so
# pages are evicted and fetched again while readers race.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src"
head -c $((300 << 20)) /dev/urandom > "$T/src/f"
head -c $((3 << 20 | 12345)) /dev/urandom > "$T/src/g"
mount_cachefs "$T/src" "$T/mnt" -o ram_cache=64M,page_size=256K,shards=2
$PRCMP "$T/src/f" "$T/mnt/f" 8 1500 $((3 << 20)) || fail "random preads differ (evicting tier)"
pass "8 threads x 1500 random preads of a 300 MiB file"
$PRCMP "$T/src/g" "$T/mnt/g" 8 3000 $((1 << 20)) || fail "random preads differ (small file)"
pass "8 threads x 3000 random preads of a file with a partial last page"
unmount_cachefs "$T/mnt"

# With kernel_cache and 4K pages: many parts per request, fan-out and reply.
mount_cachefs "$T/src" "$T/mnt" -o ram_cache=32M,page_size=4K,kernel_cache,shards=3,intake=threads
$PRCMP "$T/src/g" "$T/mnt/g" 8 2000 $((1 << 20)) || fail "random preads differ (4K pages)"
pass "random preads with 4 KiB pages over 3 shards, libfuse worker intake"
unmount_cachefs "$T/mnt"

# Replies through splice instead of writev.
mount_cachefs "$T/src" "$T/mnt" -o ram_cache=64M,splice,shards=2
$PRCMP "$T/src/f" "$T/mnt/f" 8 1000 $((3 << 20)) || fail "random preads differ (splice)"
cmp "$T/src/g" "$T/mnt/g" || fail "sequential read differs (splice)"
pass "random and sequential reads with splice replies"
unmount_cachefs "$T/mnt"
