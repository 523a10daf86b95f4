#!/bin/bash
# Writes through a local-source mount reach the real directory: what
# checkpoint writers do at the syscall level (torch.save, a distributed
# checkpoint's fsync + rename over, a temporary file + chmod + os.replace,
# shutil.move from another file system), trees copied in with cp -a, tar and
# rsync, and the namespace calls. A read-only mount answers EROFS.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src" "$T/other"
echo "old bytes of the checkpoint" >"$T/src/ckpt.pt"
mount_logged "$T/src" "$T/m" "$T/log" -o kernel_cache,shards=2

# Reads cached first: the overwrite must not be answered from them.
cat "$T/m/ckpt.pt" >/dev/null

# ---- checkpoint patterns, checked on the real directory ----
$PY3 - "$T/m" "$T/src" "$T/other" <<'EOF'
import os, shutil, sys, tempfile, hashlib
m, src, other = sys.argv[1:]

def same(name):
    a = open(os.path.join(m, name), 'rb').read()
    b = open(os.path.join(src, name), 'rb').read()
    assert a == b, f"{name}: mount and source differ ({len(a)} vs {len(b)} bytes)"
    return a

# torch.save: O_CREAT|O_TRUNC over an existing file, sequential writes, close.
try:
    import torch
    state = {"w": torch.arange(1 << 20, dtype=torch.float32), "step": 7}
    torch.save(state, os.path.join(m, "ckpt.pt"))
    back = torch.load(os.path.join(m, "ckpt.pt"))
    assert back["step"] == 7 and torch.equal(back["w"], state["w"])
    same("ckpt.pt")
    print("ok - torch.save over an existing file, torch.load back, bytes in the source")
except ImportError:
    data = os.urandom(3 << 20)
    with open(os.path.join(m, "ckpt.pt"), "wb") as f:
        f.write(data)
    assert same("ckpt.pt") == data
    print("ok - (no torch) O_TRUNC overwrite, bytes in the source")

# Distributed checkpoint: .metadata.tmp, fsync, unlink .metadata, rename over it.
for gen in range(3):
    tmp = os.path.join(m, ".metadata.tmp")
    with open(tmp, "wb") as f:
        f.write(b"meta %d " % gen * 1000)
        f.flush()
        os.fsync(f.fileno())
    if os.path.exists(os.path.join(m, ".metadata")):
        os.unlink(os.path.join(m, ".metadata"))
    os.rename(tmp, os.path.join(m, ".metadata"))
    assert same(".metadata") == b"meta %d " % gen * 1000
assert not os.path.exists(os.path.join(src, ".metadata.tmp"))
print("ok - .metadata.tmp + fsync + unlink + rename, three generations")

# safetensors-style: a temporary file in the target directory, chmod, os.replace.
os.mkdir(os.path.join(m, "model"))
for gen in range(2):
    fd, tmp = tempfile.mkstemp(dir=os.path.join(m, "model"), prefix=".tmp")
    payload = os.urandom(5 << 20)
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(m, "model", "model.safetensors"))
    assert same("model/model.safetensors") == payload
assert os.stat(os.path.join(src, "model", "model.safetensors")).st_mode & 0o777 == 0o644
assert sorted(os.listdir(os.path.join(m, "model"))) == ["model.safetensors"]
print("ok - mkstemp + chmod + os.replace over the target")

# Lightning-style shutil.move from another file system: copy2 (utime, chmod), unlink.
payload = os.urandom(9 << 20)
with open(os.path.join(other, "last.ckpt"), "wb") as f:
    f.write(payload)
os.utime(os.path.join(other, "last.ckpt"), (1600000000, 1600000000))
os.chmod(os.path.join(other, "last.ckpt"), 0o600)
shutil.move(os.path.join(other, "last.ckpt"), os.path.join(m, "last.ckpt"))
assert not os.path.exists(os.path.join(other, "last.ckpt"))
st = os.stat(os.path.join(src, "last.ckpt"))
assert same("last.ckpt") == payload
assert int(st.st_mtime) == 1600000000 and st.st_mode & 0o777 == 0o600, (st.st_mtime, oct(st.st_mode))
print("ok - shutil.move from another file system: bytes, mtime and mode")

# Append, overwrite in place, truncate, read back through the same O_RDWR handle.
p = os.path.join(m, "log.txt")
with open(p, "ab") as f:
    f.write(b"line 1\n")
with open(p, "ab") as f:
    f.write(b"line 2\n")
with open(p, "r+b") as f:
    f.seek(5)
    f.write(b"X")
    f.seek(0)
    assert f.read() == b"line X\nline 2\n"
    f.truncate(7)
assert same("log.txt") == b"line X\n"
print("ok - append, overwrite in place, read back through the handle, ftruncate")
EOF

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
if $PY3 -c 'import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.renameat2(-100, b"a/hard", -100, b"a/link", 1)   # RENAME_NOREPLACE
sys.exit(0 if rc == 0 else ctypes.get_errno())'; then
	fail "RENAME_NOREPLACE replaced an existing name"
else
	[ $? = 17 ] || fail "RENAME_NOREPLACE: errno $? (want EEXIST)"
fi
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
command -v rsync >/dev/null && rsync -a "$T/tree/" "$T/m/rsync/"
for d in cp tar rsync; do
	[ -d "$T/m/$d" ] || continue
	diff -r --no-dereference "$T/tree" "$T/m/$d" || fail "$d: the tree differs through the mount"
	diff -r --no-dereference "$T/tree" "$T/src/$d" || fail "$d: the tree differs in the source"
	[ "$(stat -c '%a' "$T/src/$d/sub/deeper")" = 700 ] || fail "$d: mode of a directory lost"
	[ "$(stat -c '%Y' "$T/src/$d/big")" = 1400000000 ] || fail "$d: mtime lost"
done
pass "cp -a, tar x$(command -v rsync >/dev/null && echo ', rsync -a') of a tree: diff -r clean in the mount and the source, modes and times kept"
cd /

# ---- read-only ----
mount_logged "$T/src" "$T/ro" "$T/log.ro" -o ro
if touch "$T/ro/new" 2>"$T/err"; then fail "a ro mount created a file"; fi
grep -q "Read-only" "$T/err" || fail "ro create: $(cat "$T/err")"
if (echo x >>"$T/ro/log.txt") 2>"$T/err"; then fail "a ro mount appended"; fi
grep -q "Read-only" "$T/err" || fail "ro append: $(cat "$T/err")"
grep -q " $T/ro fuse.cachefs ro," /proc/mounts || fail "/proc/mounts does not say ro"
pass "a ro mount answers EROFS and says ro in /proc/mounts"
