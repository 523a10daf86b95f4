#!/bin/bash
# The store is a hard cap: a small store under a read set four times its
# size never grows past its size and keeps reads correct. On a file system
# with no room for it (a full loop-mounted ext4 image), the mount warns once
# and serves from RAM and the source.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src"
for i in $(seq 16); do head -c $((4 << 20)) /dev/urandom > "$T/src/f$i"; done
size=$((16 << 20))

mount_logged "$T/src" "$T/mnt" "$T/log1" -o ram_cache=4M,shards=2,ssd_cache=$T/store:16M
for pass in 1 2; do same_tree "$T/src" "$T/mnt" >/dev/null; done
[ "$(stat -c %s "$T/store")" = $size ] || fail "store file is $(stat -c %s "$T/store") bytes, made as $size"
# fallocate's blocks, plus a few for the extent tree.
[ $(($(stat -c %b "$T/store") * 512)) -le $((size + 65536)) ] || fail "store file allocates more than $size"
unmount_cachefs "$T/mnt"
wait
cat "$T/log1"
[ "$(counter "$T/log1" 'evictions, [0-9]* log')" -gt 0 ] || fail "no SSD evictions under a set 4x the store"
held=$(sed -n 's/.*pages (\([0-9]*\) bytes of \([0-9]*\)) held.*/\1 \2/p' "$T/log1")
read -r bytes cap <<< "$held"
[ "$bytes" -le "$cap" ] && [ "$cap" -le $size ] || fail "held $bytes bytes of $cap, store $size"
"$FSCK" "$T/store" || fail "store not clean"
pass "64 MiB read through a 16 MiB store: capped, clean"

# A full file system.
command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null || skip "no mkfs.ext4/losetup"
[ "$(id -u)" = 0 ] || skip "loop mounts need root"
truncate -s 48M "$T/img"
mkfs.ext4 -q -F "$T/img"
mkdir -p "$T/full"
mount -o loop "$T/img" "$T/full" || skip "cannot loop-mount"
MOUNTS+=("$T/full")
dd if=/dev/zero of="$T/full/filler" bs=1M 2>/dev/null || true   # ENOSPC ends it
mount_logged "$T/src" "$T/mnt" "$T/log2" -o ram_cache=4M,shards=2,ssd_cache=$T/full/store:32M
same_tree "$T/src" "$T/mnt"
unmount_cachefs "$T/mnt"
wait
cat "$T/log2"
[ "$(grep -c "cannot reserve" "$T/log2")" = 1 ] || fail "wanted one warning about the full file system"
[ ! -e "$T/full/store" ] || fail "a store file was left on the full file system"
pass "full file system: one warning, reads from RAM and the source"
umount_retry "$T/full"

# A sparse store (ext2 has no fallocate) on a file system that fills up
# while the mount runs: writes fail with ENOSPC, one warning, reads go on.
truncate -s 48M "$T/img2"
mkfs.ext2 -q -F "$T/img2"
mkdir -p "$T/sparse"
mount -o loop "$T/img2" "$T/sparse" || skip "cannot loop-mount"
MOUNTS+=("$T/sparse")
dd if=/dev/zero of="$T/sparse/filler" bs=1M count=36 2>/dev/null
mount_logged "$T/src" "$T/mnt" "$T/log3" -o ram_cache=4M,shards=2,ssd_cache=$T/sparse/store:40M
same_tree "$T/src" "$T/mnt"
same_tree "$T/src" "$T/mnt" >/dev/null
unmount_cachefs "$T/mnt"
wait
cat "$T/log3"
grep -q "fallocate not supported" "$T/log3" || skip "this ext4 build supports fallocate without extents"
[ "$(grep -c "SSD tier is off" "$T/log3")" = 1 ] || fail "wanted one warning when the store filled up"
pass "store filling up at run time: one warning, reads from RAM and the source"
umount_retry "$T/sparse"
