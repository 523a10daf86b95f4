#!/bin/bash
# Benchmarks writes to S3 through the mount against the same local S3
# server (s3rver on loopback), in one run. Each time runs from the first
# byte written until the object is in the bucket: cachefs's and s3fs's
# close() returns then (checked, after the clock stops: the object is
# there right after it); rclone's --vfs-cache-mode writes returns before
# its upload, so its time runs until the object appears (polled twice a
# second, to load the server little).
#   1. a 1 GiB sequential write (dd bs=1M) and close, against the same bytes
#      uploaded directly with boto3's multipart upload_file (what a Python
#      job would do), one curl PUT of them (one stream, no multipart), s3fs
#      and rclone;
#   2. torch.save of a 1 GiB state dict (Debian python3-torch);
#   3. 1000 files of 100 KiB created and written with cp -r, files/s, vs
#      s3fs and rclone.
# Figures are medians of RUNS runs; a run that fails stops the script.
# Objects are checked in the bucket (the 1 GiB ones by MD5, the others by
# size) and deleted after each run. Dirty pages are synced before each.
#
# usage: perf/write.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch, default /var/tmp/cachefs-write), RUNS (default 3)
{
set -eu -o pipefail
shopt -s inherit_errexit   # a failing command fails the run inside $(...) too
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-write}
runs=${RUNS:-3}
mnt=$work/mnt
PY3=/usr/bin/python3
. "$src/perf/lib.sh"

die() { echo "perf/write.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
for t in s3fs rclone curl node; do
	command -v $t >/dev/null || die "$t missing (tools/install-deps.sh)"
done
$PY3 -c 'import torch, boto3' || die "python3-torch or python3-boto3 missing (tools/install-deps.sh)"
# What a run killed midway left mounted (possibly several, stacked) goes first.
while grep -q " $mnt fuse" /proc/mounts; do umount -l "$mnt"; done
rm -rf "$work/data" "$work/staging"
mkdir -p "$mnt"
# umount_all: unmounts and waits for the daemon to exit, so that the next run starts clean.
umount_all() {
	local pid
	pid=$(mount_pid "$mnt" || true)
	fusermount3 -u -q "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	for _ in $(seq 600); do [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null && return 0; sleep 0.05; done
	die "the daemon serving $mnt did not exit"
}
trap '(umount_all) || true; [ -z "${server:-}" ] || kill $server 2>/dev/null' EXIT
s3rver_start bench
s3tool() { $PY3 "$src/tests/s3tool.py" "$ep" "$@"; }
[ -f "$work/big.bin" ] || head -c $((1 << 30)) /dev/urandom >"$work/big.bin"
sum=$(md5sum <"$work/big.bin" | cut -d' ' -f1)

# mounted NAME: NAME's file system (fuse.NAME) is the one on $mnt.
mounted() {
	for _ in $(seq 100); do grep -q " $mnt fuse\.$1 " /proc/mounts && return 0; sleep 0.1; done
	die "$1 did not mount on $mnt: $(grep " $mnt " /proc/mounts)"
}
cfs_mount() {
	"$bin/cachefs" s3://bench "$mnt" -o "endpoint=$ep,passwd_file=$work/passwd,staging_dir=$work/staging" \
		2>>"$work/cachefs.log"
	mounted cachefs
}
s3fs_mount() { s3fs_mount_bucket bench; mounted s3fs; }
rclone_mount() { rclone_mount_bucket bench writes; mounted rclone; }
# landed MOUNT-FN PREFIX N SIZE: N objects of SIZE below PREFIX are in the
# bucket: at once for the mounts whose close says so, in time for rclone.
landed() {
	local secs=0 every=0.05
	[ "$1" = rclone_mount ] && secs=600 every=0.5
	s3tool wait bench "$2" "$3" "$4" "$secs" "$every" || die "$2: not in the bucket after close ($1)"
}
# after_close MOUNT-FN PREFIX N SIZE: the end of a timed write, printed. The
# mounts whose close uploads stop the clock at once, and are checked after.
after_close() {
	if [ "$1" = rclone_mount ]; then
		landed "$@"
		date +%s.%N
	else
		date +%s.%N
		landed "$@"
	fi
}
check() {   # check KEY: the object's bytes are big.bin's; then it goes
	s3tool get bench "$1" "$work/back.bin"
	[ "$(md5sum <"$work/back.bin" | cut -d' ' -f1)" = "$sum" ] || die "$1 differs in the bucket"
	rm -f "$work/back.bin"
	s3tool delete bench "$1"
}
rate() { $PY3 -c "print(round($1 / ($3 - $2) / 1e6))"; }   # rate BYTES T0 T1: MB/s

# 1. 1 GiB.
seq_write() {   # seq_write MOUNT-FN KEY
	local t0 t1
	"$1"
	cat "$work/big.bin" >/dev/null
	sync
	t0=$(date +%s.%N)
	dd if="$work/big.bin" of="$mnt/$2" bs=1M status=none
	t1=$(after_close "$1" "$2" 1 $((1 << 30)))
	umount_all
	check "$2"
	rate $((1 << 30)) "$t0" "$t1"
}
boto3_put() {
	cat "$work/big.bin" >/dev/null
	sync
	$PY3 - "$ep" "$work/big.bin" <<'PY'
import sys, time, boto3
from boto3.s3.transfer import TransferConfig
c = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="S3RVER",
                 aws_secret_access_key="S3RVER")
t0 = time.monotonic()
c.upload_file(sys.argv[2], "bench", "boto3.bin", Config=TransferConfig(multipart_chunksize=8 << 20))
print(round((1 << 30) / (time.monotonic() - t0) / 1e6))
PY
	check boto3.bin
}
curl_put() {
	local t0 t1
	cat "$work/big.bin" >/dev/null
	sync
	t0=$(date +%s.%N)
	curl -sf -o /dev/null -T "$work/big.bin" --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$ep/bench/curl.bin" || die "curl PUT failed"
	t1=$(date +%s.%N)
	check curl.bin
	rate $((1 << 30)) "$t0" "$t1"
}
# Each median is assigned first: a failed run stops the script there.
cfs_seq=$(med seq_write cfs_mount cfs.bin)
ref=$(med boto3_put)
row "1 GiB sequential write + close (MB/s)" "$cfs_seq" "$ref" "boto3 upload_file (multipart, 10 threads)"
ref=$(med curl_put)
row "1 GiB sequential write + close (MB/s)" "$cfs_seq" "$ref" "one curl PUT (one stream, no multipart, unsigned payload)"
ref=$(med seq_write s3fs_mount s3fs.bin)
row "1 GiB sequential write + close (MB/s)" "$cfs_seq" "$ref" "s3fs"
ref=$(med seq_write rclone_mount rclone.bin)
row "1 GiB sequential write + close (MB/s)" "$cfs_seq" "$ref" "rclone --vfs-cache-mode writes, until in the bucket"

# 2. torch.save of a 1 GiB state dict: 64 tensors of 16 MiB.
torch_save() {
	local t
	cfs_mount
	sync
	t=$($PY3 - "$mnt/model.pt" <<'PY'
import sys, time, torch
state = {f"layer{i}.weight": torch.randn(1 << 22) for i in range(64)}
t0 = time.monotonic()
torch.save(state, sys.argv[1])
print(f"{(64 << 24) / (time.monotonic() - t0) / 1e6:.0f}")
PY
)
	landed cfs_mount model.pt 1 "$(stat -c %s "$mnt/model.pt")"
	umount_all
	s3tool delete bench model.pt
	echo "$t"
}
saved=$(med torch_save)
note "torch.save of a 1 GiB state dict (MB/s)" "$saved" "open to close, in the bucket at close"

# 3. 1000 x 100 KiB files.
mkdir -p "$work/small"
for i in $(seq -w 1000); do [ -f "$work/small/f$i" ] || head -c 102400 /dev/urandom >"$work/small/f$i"; done
small() {   # small MOUNT-FN: files/s for cp -r of 1000 files of 100 KiB, until all are in the bucket
	local t0 t1 dir=small-$(date +%s%N)
	"$1"
	cat "$work"/small/* >/dev/null
	sync
	t0=$(date +%s.%N)
	cp -r "$work/small" "$mnt/$dir"
	# rclone uploads after close, and drops what is pending at unmount: wait before.
	t1=$(after_close "$1" "$dir/" 1000 102400)
	umount_all
	s3tool delete-prefix bench "$dir/"
	$PY3 -c "print(round(1000 / ($t1 - $t0)))"
}
cfs_small=$(med small cfs_mount)
ref=$(med small s3fs_mount)
row "create + write 1000 x 100 KiB (files/s)" "$cfs_small" "$ref" "s3fs"
ref=$(med small rclone_mount)
row "create + write 1000 x 100 KiB (files/s)" "$cfs_small" "$ref" "rclone --vfs-cache-mode writes, until in the bucket"

echo
echo "perf/write.sh at $(git -C "$src" describe --always --dirty), RUNS=$runs:"
table write
exit
}
