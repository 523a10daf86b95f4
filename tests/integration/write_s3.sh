#!/bin/bash
# Writes through an S3 mount, checked on the server with botocore: the
# checkpoint patterns (tests/ckpt_patterns.py), a multipart upload, metadata
# as s3fs keeps it, directories as markers, rename (of a directory too),
# truncate; trees copied in with cp -a, tar and rsync; a daemon killed with a
# written file open (the next mount finishes the upload, or keeps the bytes
# when the object changed meanwhile); parts streamed while a new file is
# written, and what makes a stream give way to a whole upload; a server that
# stops (close gets EIO, the bytes are kept); staging_max (ENOSPC, reads go
# on); names S3 cannot hold and files past its part limit.
. "$(dirname "$0")/../lib.sh"

$PY3 -c 'import torch' 2>/dev/null || skip "python3-torch is not installed (tools/install-deps.sh)"
command -v rsync >/dev/null || skip "rsync is not installed (tools/install-deps.sh)"
s3_start bkt
S3T="$S3TOOL $S3_EP"
OPTS="$S3_OPTS,write_part_size=5M,dir_cache_ttl=1,shards=2"
mount_logged s3://bkt "$T/m" "$T/log" -o "$OPTS"

# server FILE KEY: the object's bytes on the server are FILE's.
server() {
	$S3T get bkt "$2" "$T/got" || fail "$2 is not in the bucket"
	cmp -s "$1" "$T/got" || fail "$2 in the bucket differs from $1"
}

# write_held DST SRC FLAG: in the background, SRC's bytes written to DST,
# which is then held open (not closed) for two minutes; FLAG appears once
# they are written. $writer is its PID.
write_held() {
	$PY3 - "$@" <<'EOF' &
import sys, time
dst, src, flag = sys.argv[1:]
f = open(dst, "wb")
f.write(open(src, "rb").read())
open(flag, "w").close()
time.sleep(120)
EOF
	writer=$!
}

# absent KEY: the bucket has no KEY (HEAD said 404, not some other failure).
absent() {
	local rc=0
	$S3T head bkt "$1" >/dev/null 2>&1 || rc=$?
	[ "$rc" = 2 ] || fail "$1 is in the bucket (or HEAD failed: $rc)"
}

# ---- checkpoint patterns (tests/ckpt_patterns.py), checked on the server ----
mkdir -p "$T/want" "$T/elsewhere"
$PY3 "$top_srcdir/tests/ckpt_patterns.py" "$T/m" "$T/want" "$T/elsewhere"
(cd "$T/want" && find . -type f | sed 's|^\./||') | while read -r f; do server "$T/want/$f" "$f"; done
cp "$T/want/ckpt.pt" "$T/ckpt.pt"
$S3T head bkt model/model.safetensors | grep -q '"mode": "33184"' ||
	fail "mode of model.safetensors: $($S3T head bkt model/model.safetensors)"
$S3T head bkt last.ckpt | grep -q '"mtime": "1600000000"' || fail "mtime of last.ckpt: $($S3T head bkt last.ckpt)"
$S3T keys bkt "" >"$T/keys"
grep -q tmp "$T/keys" && fail "a temporary file is left in the bucket: $(cat "$T/keys")"
pass "the objects are byte-exact on the server, with mode and mtime as x-amz-meta-* (s3fs's names)"

# ---- namespace ----
cd "$T/m"
mkdir -p a/b
echo one >a/b/f1
echo two >a/f2
if rmdir a 2>"$T/err"; then fail "rmdir of a non-empty directory"; fi
grep -q "not empty" "$T/err" || fail "rmdir: $(cat "$T/err")"
mv a z
[ "$(cat z/b/f1)" = one ] || fail "z/b/f1 after the rename"
$S3T keys bkt z/ | sort >"$T/keys"
printf 'z/\nz/b/\nz/b/f1\nz/f2\n' | diff - "$T/keys" || fail "keys after renaming a directory"
left=$($S3T keys bkt a/)
[ -z "$left" ] || fail "keys left under a/: $left"
printf 'hello world' >t.txt
truncate -s 5 t.txt
printf 'hello' >"$T/want.txt"
server "$T/want.txt" t.txt
echo " again" >>t.txt
printf 'hello again\n' >"$T/want.txt"
server "$T/want.txt" t.txt
rm -r z t.txt
left=$($S3T keys bkt z/)
[ -z "$left" ] || fail "rm -r left keys: $left"
long=$(printf 'x%.0s' $(seq 200))   # s3rver keeps keys as files: a part under 240 bytes
if mkdir -p "$long/$long/$long/$long/$long/$long" 2>"$T/err"; then fail "a key over 1024 bytes was made"; fi
grep -q "too long" "$T/err" || fail "a key over 1024 bytes: $(cat "$T/err")"
rm -rf "$long"
cd /
pass "mkdir, rmdir ENOTEMPTY, rename of a directory (every key moved), truncate, append, rm -r, ENAMETOOLONG"

# ---- a tree copied in ----
mkdir -p "$T/tree/sub"
for i in $(seq 40); do head -c $((RANDOM * 4)) /dev/urandom >"$T/tree/sub/f$i"; done
head -c $((7 << 20)) /dev/urandom >"$T/tree/big"
chmod 640 "$T/tree/big" "$T/tree/sub/f1"
touch -d @1400000000 "$T/tree/big" "$T/tree/sub/f1"
(cd "$T/tree" && find . -type f | sed 's|^\./||' | sort) >"$T/files"
cp -a "$T/tree" "$T/m/cp"
tar -C "$T/tree" -cf - . | tar -C "$T/m" --one-top-level=tar -xf -
rsync -a "$T/tree/" "$T/m/rsync/"
# Past dir_cache_ttl the listings below come from the bucket, and a listing
# carries no metadata: it must not hide the mode and mtime the copy set.
sleep 1.2
for d in cp tar rsync; do
	diff -r "$T/tree" "$T/m/$d" || fail "$d: the tree differs through the mount"
	ls -l "$T/m/$d" >/dev/null
	[ "$(stat -c '%a %Y' "$T/m/$d/big")" = "640 1400000000" ] ||
		fail "$d: mode and mtime of big through the mount: $(stat -c '%a %Y' "$T/m/$d/big")"
	server "$T/tree/big" "$d/big"
	$S3T head bkt "$d/big" >"$T/head"
	grep -q '"mode": "33184"' "$T/head" && grep -q '"mtime": "1400000000"' "$T/head" ||
		fail "$d: mode and mtime of big in the bucket: $(cat "$T/head")"
	# Exactly the tree's files: no temporary (rsync's .big.XXXXXX) left.
	$S3T keys bkt "$d/" | grep -v '/$' | sed "s|^$d/||" | sort | diff "$T/files" - ||
		fail "$d: the keys in the bucket are not the tree's files"
done
# Sizes and mtimes are the source's: a second rsync sends no file again.
rsync -ai "$T/tree/" "$T/m/rsync/" >"$T/again"
! grep '^[<>]f' "$T/again" || fail "a second rsync -a sent files again"
# A directory renamed is copied key by key: a copy of one part is the same
# version, and what the copy kept shows past the TTL too.
mv "$T/m/cp" "$T/m/moved"
sleep 1.2
ls -lR "$T/m/moved" >/dev/null
[ "$(stat -c '%a %Y' "$T/m/moved/sub/f1")" = "640 1400000000" ] ||
	fail "mode and mtime of a file in a renamed directory: $(stat -c '%a %Y' "$T/m/moved/sub/f1")"
pass "cp -a, tar x and rsync -a of a tree: diff -r clean, the keys are the files, mode and mtime in the bucket; a second rsync sends nothing, a renamed directory keeps them"

# ---- a second mount sees the new objects ----
mount_logged s3://bkt "$T/m2" "$T/log2" -o "$S3_OPTS,ro"
cmp "$T/ckpt.pt" "$T/m2/ckpt.pt" || fail "a second mount reads another ckpt.pt"
pass "a second mount reads what the first wrote"

# ---- streaming: a new file written in order sends its parts while it is written ----
mount_logged s3://bkt "$T/ms" "$T/logs" -o "$OPTS,log_level=debug"
head -c $((23 << 20)) /dev/urandom >"$T/stream"
$PY3 - "$T/ms" "$T/stream" <<'EOF'
import os, sys, time
mnt, src = sys.argv[1:]
data = open(src, "rb").read()
M = 1 << 20
def chunks(f, lo, hi):
    for o in range(lo, hi, M):
        f.write(data[o:min(o + M, hi)])
# In order, with a pause before close: parts go while it is open.
with open(mnt + "/s-seq", "wb") as f:
    chunks(f, 0, len(data))
    time.sleep(1)
# Out of order after two parts: the stream is dropped, the file goes whole.
with open(mnt + "/s-rand", "wb") as f:
    chunks(f, 0, 12 * M)
    f.seek(3 * M); f.write(data[3 * M:4 * M]); f.seek(12 * M)
    chunks(f, 12 * M, len(data))
# Truncated while streamed.
with open(mnt + "/s-trunc", "wb") as f:
    chunks(f, 0, 12 * M)
    f.truncate(7 * M); f.seek(7 * M)
    chunks(f, 7 * M, len(data))
# Renamed while streamed: the object is the new name's.
with open(mnt + "/s-old", "wb") as f:
    chunks(f, 0, 12 * M)
    os.rename(mnt + "/s-old", mnt + "/s-new")
    chunks(f, 12 * M, len(data))
# fsync completes the stream; later writes go whole at close.
with open(mnt + "/s-fsync", "wb") as f:
    chunks(f, 0, 12 * M)
    os.fsync(f.fileno())
    chunks(f, 12 * M, len(data))
EOF
for k in s-seq s-rand s-trunc s-new s-fsync; do server "$T/stream" $k; done
absent s-old
grep -q "s3://bkt/s-seq: 5 parts, [1-9] of them taken before the commit" "$T/logs" ||
	fail "no part of s-seq went before its close: $(grep s-seq "$T/logs")"
# Each of the others streamed, then went whole (after its stream was aborted).
for k in s-rand s-trunc s-new s-fsync; do
	grep -q "s3://bkt/$k: 5 parts sent in" "$T/logs" || fail "$k was not uploaded whole: $(grep "$k" "$T/logs")"
done
grep -q "s3://bkt/s-fsync: 3 parts, .* taken before the commit" "$T/logs" ||
	fail "the fsync of s-fsync did not complete its stream: $(grep s-fsync "$T/logs")"
pass "parts sent while a file is written in order; out of order, truncated, renamed or fsynced while streamed: byte-exact"
unmount_cachefs "$T/ms"

# ---- objects over copy_max: rename and chmod copy them through the daemon ----
mount_logged s3://bkt "$T/mc" "$T/logc" -o "$OPTS,copy_max=5M,log_level=debug"
cp "$T/stream" "$T/mc/big-tmp"
mv "$T/mc/big-tmp" "$T/mc/big-final"
chmod 600 "$T/mc/big-final"
server "$T/stream" big-final
absent big-tmp
$S3T head bkt big-final | grep -q '"mode": "33152"' || fail "mode of big-final: $($S3T head bkt big-final)"
unmount_cachefs "$T/mc"
[ "$(grep -c "s3://bkt/big-final: 5 parts sent in" "$T/logc")" = 2 ] ||
	fail "rename and chmod did not copy through the daemon: $(grep big- "$T/logc")"
pass "an object over copy_max: rename and chmod copy it by ranged GETs into a multipart upload, byte-exact"

# ---- kill -9 with a written file open: the next mount finishes the upload ----
# ... and one written out of order (staged, uploaded whole) and closed just before.
head -c $((9 << 20)) /dev/urandom >"$T/rw"
$PY3 - "$T/rw" "$T/m/rw.bin" <<'EOF'
import os, random, sys
data = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
offs = list(range(0, len(data), 256 << 10))
random.shuffle(offs)
for o in offs:
    os.pwrite(fd, data[o:o + (256 << 10)], o)
os.close(fd)
EOF
head -c $((512 << 20)) /dev/urandom >"$T/killed"
write_held "$T/m/killed.bin" "$T/killed" "$T/flag"
wait_file "$T/flag"
absent killed.bin   # not before its close
kill_daemon "$T/m"
kill "$writer" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
mount_logged s3://bkt "$T/m" "$T/log3" -o "$OPTS"
logged "$T/log3" "killed.bin: finished the upload of 536870912 bytes"
# The record held the stream's upload: the next mount asks the store to
# abort it (s3rver answers AbortMultipartUpload with 405, which is logged).
grep -q "killed.bin: \(aborted the multipart upload a stopped daemon had begun\|the multipart upload .* was not aborted\)" \
	"$T/log3" || fail "the stream begun before the kill was not aborted: $(cat "$T/log3")"
server "$T/killed" killed.bin
server "$T/rw" rw.bin
pass "kill -9 with 512 MiB written and not closed: the next mount asked to abort its stream and uploaded it, byte-exact; a random-write file closed before it is whole"

# ---- the same, but the object changed meanwhile: kept, not overwritten ----
echo "old" >"$T/m/changed.txt"
$PY3 - "$T/m/changed.txt" "$T/flag2" <<'EOF' &
import sys, time
f = open(sys.argv[1], "ab")
f.write(b"appended by the writer\n")
f.flush()
open(sys.argv[2], "w").close()
time.sleep(120)
EOF
writer=$!
wait_file "$T/flag2"
kill_daemon "$T/m"
kill "$writer" 2>/dev/null || true
echo "someone else's" >"$T/other"
$S3T put bkt changed.txt "$T/other"
mount_logged s3://bkt "$T/m" "$T/log4" -o "$OPTS"
logged "$T/log4" "changed.txt: changed in the bucket.*kept in"
server "$T/other" changed.txt
kept=$(ls "$T"/staging/*/recovery/changed.txt.* 2>/dev/null | head -n1) || true
[ -n "$kept" ] && [ "$(cat "$kept")" = "$(printf 'old\nappended by the writer')" ] || fail "the staged bytes were not kept: $kept"
pass "an object changed while the daemon was down: the bucket keeps the new one, recovery/ the staged one"

# ---- the server stops answering during the write: close says EIO after timeout, the bytes are kept ----
unmount_cachefs "$T/m"
mount_logged s3://bkt "$T/m" "$T/log5" -o "$OPTS,timeout=3,retries=1,ctl_socket=$T/ctl.sock"
head -c 100000 /dev/urandom >"$T/unsent"
$PY3 - "$T/m/unsent.bin" "$T/unsent" "$T/flag3" "$T/go" "$T/closed" <<'EOF' &
import os, sys, time
dst, src, flag, go, closed = sys.argv[1:]
f = open(dst, "wb")
f.write(open(src, "rb").read())
f.flush()
open(flag, "w").close()
while not os.path.exists(go):
    time.sleep(0.05)
start = time.time()
try:
    f.close()
    r = "closed"
except OSError as e:
    r = e.strerror
open(closed, "w").write("%s %.1f" % (r, time.time() - start))
EOF
writer=$!
wait_file "$T/flag3"
kill -STOP "$S3_PID"   # it takes connections and never answers
touch "$T/go"
wait "$writer"
read -r what secs <<<"$(sed 's/Input\/output error/EIO/' "$T/closed")"
[ "$what" = EIO ] || fail "close with the server stopped: $(cat "$T/closed")"
[ "${secs%.*}" -ge 2 ] && [ "${secs%.*}" -le 12 ] || fail "close took $secs s with timeout=3"
kept=$(ls "$T"/staging/*/recovery/unsent.bin.* 2>/dev/null | head -n1) || true
[ -n "$kept" ] && cmp -s "$kept" "$T/unsent" || fail "the bytes of the failed upload are not in recovery/"
grep -q "unsent.bin: .*kept in" "$T/log5" || fail "no log line of the kept bytes"
# The last close tries the commit once more; the file still counts as one failure.
logged "$T/log5" "closing .*unsent.bin: .*may not be in the source"
"$CTL" -s "$T/ctl.sock" status >"$T/st"
grep -q "1 failed (their bytes are kept" "$T/st" || fail "cachefsctl status: $(grep writes "$T/st")"
[ "$(ls "$T"/staging/*/recovery/unsent.bin.* | wc -l)" = 1 ] || fail "the bytes were kept twice"
kill -CONT "$S3_PID"
pass "server stopped during a write: close() gave EIO after $secs s (timeout=3), the bytes are in recovery/"

# ---- staging_max ----
unmount_cachefs "$T/m"
mount_logged s3://bkt "$T/m" "$T/log6" -o "$OPTS,staging_max=4M"
if head -c $((6 << 20)) /dev/zero >"$T/m/toobig" 2>"$T/err"; then fail "a write past staging_max succeeded"; fi
grep -q "No space left" "$T/err" || fail "staging_max: $(cat "$T/err")"
cmp "$T/ckpt.pt" "$T/m/ckpt.pt" || fail "reads failed with the staging area full"
if $PY3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT); os.pwrite(fd, b"x", 5 * 2**20 * 10000)' \
	"$T/m/huge" 2>"$T/err"; then fail "a write past 10000 parts succeeded"; fi
grep -q "File too large" "$T/err" || fail "past 10000 parts: $(cat "$T/err")"
rm -f "$T/m/toobig" "$T/m/huge"
pass "staging_max: ENOSPC, reads go on; a write past 10000 parts: EFBIG"

# ---- a checkpoint read back right after it is written is a cache hit ----
mount_logged s3://bkt "$T/m3" "$T/log7" -o "$OPTS,ctl_socket=$T/ctl3.sock"
head -c $((6 << 20)) /dev/urandom >"$T/fresh"
cp "$T/fresh" "$T/m3/fresh.bin"
# Committed by its fsync, so that the close has nothing left to upload.
$PY3 -c 'import os, sys
with open(sys.argv[2], "wb") as f:
    f.write(open(sys.argv[1], "rb").read()); f.flush(); os.fsync(f.fileno())' "$T/fresh" "$T/m3/synced.bin"
# The tiers are filled after the last close: wait for the 12 pages.
for _ in $(seq 100); do
	pages=$("$CTL" -s "$T/ctl3.sock" status --json | $PY3 -c 'import json, sys; print(json.load(sys.stdin)["ram"]["pages"])')
	[ "$pages" -ge 12 ] && break
	sleep 0.1
done
[ "$pages" -ge 12 ] || fail "only $pages pages in the RAM tier after writing 2 x 6 MiB"
for f in fresh synced; do
	dd if="$T/m3/$f.bin" of="$T/fresh.back" bs=1M iflag=direct status=none
	cmp "$T/fresh" "$T/fresh.back" || fail "$f.bin read back differs"
done
unmount_cachefs "$T/m3"
grep -q ": 0 GET, " "$T/log7" || fail "reading back what was just written went to the bucket: $(grep GET "$T/log7")"
pass "files read back (O_DIRECT) right after they were written, closed or fsynced: from the tiers, no GET"

# ---- as a daemon (it forks after init): a streamed write, then the daemon exits at unmount ----
# What a killed daemon left is being finished as the daemon forks: its thread is the child's.
mount_logged s3://bkt "$T/m4" "$T/log8" -o "$OPTS"
head -c $((64 << 20)) /dev/urandom >"$T/left"
write_held "$T/m4/left.bin" "$T/left" "$T/flag4"
wait_file "$T/flag4"
kill_daemon "$T/m4"
kill "$writer" 2>/dev/null || true
mount_cachefs s3://bkt "$T/m4" -o "$OPTS"
head -c $((12 << 20)) /dev/urandom >"$T/daemon"
cp "$T/daemon" "$T/m4/daemon.bin"
$S3T wait bkt left.bin 1 $((64 << 20)) 120 || fail "the forked daemon did not finish left.bin"
unmount_cachefs "$T/m4"
server "$T/daemon" daemon.bin
server "$T/left" left.bin
pass "a forked daemon finishes what a killed one left, streams a write, and exits at unmount"

# Every daemon gone, so that their exit reports (LeakSanitizer) are in the logs.
unmount_cachefs "$T/m"
unmount_cachefs "$T/m2"
grep -i "runtime error\|AddressSanitizer" "$T"/log* && fail "sanitizer reports"
true
