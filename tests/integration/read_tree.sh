#!/bin/bash
# Every file of a generated tree (small files, edge sizes around the page
# size, odd names, a 1 GiB file) reads byte-identical through a mount, cold
# and again warm; ls -lR sizes and modes match; writes answer EROFS. The
# metadata calls run on the metadata threads here (local_meta=threads), as
# for an NFS source; other tests run them on the shards (a local disk).
. "$(dirname "$0")/../lib.sh"

$MKTREE "$T/src" --small 2000 --large-mib "${LARGE_MIB:-1024}"
mount_cachefs "$T/src" "$T/mnt" -o ro,ram_cache=512M,shards=2,local_meta=threads,meta_threads=2
same_tree "$T/src" "$T/mnt"
pass "cold read of the whole tree"

# Again, through the RAM tier (the 1 GiB file is larger than the tier).
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
same_tree "$T/src" "$T/mnt"
pass "warm read of the whole tree"

listing() { (cd "$1" && ls -lR --time-style=full-iso . | grep -v '^total '); }
diff <(listing "$T/src") <(listing "$T/mnt") || fail "ls -lR differs"
pass "ls -lR sizes, modes and times match"

if touch "$T/mnt/new" 2>"$T/err"; then fail "create succeeded on a read-only mount"; fi
grep -q "Read-only file system" "$T/err" || fail "create: $(cat "$T/err")"
if mkdir "$T/mnt/newdir" 2>/dev/null; then fail "mkdir succeeded"; fi
if echo x >> "$T/mnt/edge/one" 2>/dev/null; then fail "append succeeded"; fi
pass "writes answer EROFS"

[ -e "$T/mnt/no such file" ] && fail "a missing file exists"
df "$T/mnt" >/dev/null || fail "statfs failed"
pass "lookup of a missing name and statfs"
unmount_cachefs "$T/mnt"
