#!/bin/bash
# Writes through a local-source mount reach the real directory: what
# checkpoint writers do at the syscall level (tests/ckpt_patterns.py:
# torch.save, a distributed checkpoint's fsync + rename over, a temporary
# file + chmod + os.replace, shutil.move from another file system, append
# and overwrite), trees copied in with cp -a, tar and rsync, and the
# namespace calls. The patterns run twice: with the metadata calls on the
# shards (a local disk) and on the metadata threads (as for NFS). A
# read-only mount answers EROFS.
. "$(dirname "$0")/../lib.sh"

$PY3 -c 'import torch' 2>/dev/null || skip "python3-torch is not installed (tools/install-deps.sh)"
command -v rsync >/dev/null || skip "rsync is not installed (tools/install-deps.sh)"

# ---- checkpoint patterns, checked on the real directory ----
for where in shards threads; do
	mkdir -p "$T/$where/src" "$T/$where/other" "$T/$where/want"
	echo "old bytes of the checkpoint" >"$T/$where/src/ckpt.pt"
	mount_logged "$T/$where/src" "$T/$where/m" "$T/$where/log" -o kernel_cache,shards=2,local_meta=$where
	cat "$T/$where/m/ckpt.pt" >/dev/null   # cached first: the overwrite must not be answered from them
	$PY3 "$top_srcdir/tests/ckpt_patterns.py" "$T/$where/m" "$T/$where/want" "$T/$where/other"
	# Byte-exact, and nothing else left in the source (.metadata.tmp, mkstemp's files).
	same_tree "$T/$where/want" "$T/$where/src"
	[ "$(stat -c %i "$T/$where/m/ckpt.pt")" = "$(stat -c %i "$T/$where/src/ckpt.pt")" ] ||
		fail "$where: st_ino of ckpt.pt is not the source's"
	[ "$(stat -c %a "$T/$where/src/model/model.safetensors")" = 640 ] || fail "$where: mode of model.safetensors"
	[ "$(stat -c '%a %Y' "$T/$where/src/last.ckpt")" = "600 1600000000" ] || fail "$where: mode and mtime of last.ckpt"
	[ -z "$(ls -A "$T/$where/other")" ] || fail "$where: shutil.move left its source"
	unmount_cachefs "$T/$where/m"
	pass "the patterns with local_meta=$where: every file byte-exact in the source, no other, modes and times kept, the source's st_ino"
done
mkdir -p "$T/src"
mount_logged "$T/src" "$T/m" "$T/log" -o kernel_cache,shards=2

# ---- a file open for writing shows the source's times, not those it had at open ----
$PY3 - "$T/m/timed" "$T/src/timed" <<'EOF'
import os, sys, time
mnt, src = sys.argv[1:]
with open(mnt, "wb") as f:
    f.write(b"a")
    f.flush()
    time.sleep(1.1)
    f.write(b"b")
    f.flush()
    want = os.stat(src).st_mtime_ns
    for what, got in (("fstat", os.fstat(f.fileno()).st_mtime_ns), ("stat", os.stat(mnt).st_mtime_ns)):
        if got != want:
            sys.exit(f"{what} through the mount says mtime {got}, the source {want}")
EOF
pass "stat and fstat of a file open for writing show the source's mtime"

# ---- namespace calls ----
cd "$T/m"
mkdir -p a/b/c
echo x >a/b/c/f
mv a/b a/B
[ -f "$T/src/a/B/c/f" ] || fail "directory rename did not reach the source"
ln -s B/c/f a/link
[ "$(readlink a/link)" = B/c/f ] && [ "$(cat a/link)" = x ] || fail "symlink"
[ -L "$T/src/a/link" ] || fail "the symlink is not a symlink in the source"
ln a/B/c/f a/hard
[ "$(stat -c %h a/hard)" = 2 ] && [ "$(stat -c %i a/hard)" = "$(stat -c %i a/B/c/f)" ] || fail "hard link"
chmod 640 a/B/c/f
touch -d @1500000000 a/B/c/f
[ "$(stat -c '%a %Y' "$T/src/a/B/c/f")" = "640 1500000000" ] || fail "chmod/utime: $(stat -c '%a %Y' "$T/src/a/B/c/f")"
if rmdir a 2>"$T/err"; then fail "rmdir of a non-empty directory succeeded"; fi
grep -q "not empty" "$T/err" || fail "rmdir of a non-empty directory: $(cat "$T/err")"
errno=0
$PY3 -c 'import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.renameat2(-100, b"a/hard", -100, b"a/link", 1)   # RENAME_NOREPLACE
sys.exit(0 if rc == 0 else ctypes.get_errno())' || errno=$?
[ "$errno" = 17 ] || fail "RENAME_NOREPLACE over an existing name: errno $errno (want EEXIST)"
rm -r a
[ ! -e "$T/src/a" ] || fail "rm -r left $T/src/a"
pass "mkdir -p, rename of a directory, symlink, hard link, chmod, utime, rmdir ENOTEMPTY, RENAME_NOREPLACE, rm -r"

# ---- trees copied in ----
mkdir -p "$T/tree/sub/deeper"
for i in $(seq 50); do head -c $((RANDOM * 3)) /dev/urandom >"$T/tree/sub/f$i"; done
head -c $((20 << 20)) /dev/urandom >"$T/tree/big"
ln -s sub/f1 "$T/tree/rel-link"
chmod 700 "$T/tree/sub/deeper"
touch -d @1400000000 "$T/tree/big"
cp -a "$T/tree" "$T/m/cp"
tar -C "$T/tree" -cf - . | tar -C "$T/m" --one-top-level=tar -xf -
rsync -a "$T/tree/" "$T/m/rsync/"
for d in cp tar rsync; do
	diff -r --no-dereference "$T/tree" "$T/m/$d" || fail "$d: the tree differs through the mount"
	diff -r --no-dereference "$T/tree" "$T/src/$d" || fail "$d: the tree differs in the source"
	[ "$(stat -c '%a' "$T/src/$d/sub/deeper")" = 700 ] || fail "$d: mode of a directory lost"
	[ "$(stat -c '%Y' "$T/src/$d/big")" = 1400000000 ] || fail "$d: mtime lost"
done
pass "cp -a, tar x, rsync -a of a tree: diff -r clean in the mount and the source, modes and times kept"
cd /

# ---- read-only ----
mount_logged "$T/src" "$T/ro" "$T/log.ro" -o ro
if touch "$T/ro/new" 2>"$T/err"; then fail "a ro mount created a file"; fi
grep -q "Read-only" "$T/err" || fail "ro create: $(cat "$T/err")"
echo "a line" >"$T/src/log.txt"
if (echo x >>"$T/ro/log.txt") 2>"$T/err"; then fail "a ro mount appended"; fi
grep -q "Read-only" "$T/err" || fail "ro append: $(cat "$T/err")"
grep -q " $T/ro fuse.cachefs ro," /proc/mounts || fail "/proc/mounts does not say ro"
pass "a ro mount answers EROFS and says ro in /proc/mounts"
