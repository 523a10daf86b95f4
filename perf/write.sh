#!/bin/bash
# Benchmarks writes to S3 through the mount against the same local S3
# server (s3rver on loopback), in one run:
#   1. a 1 GiB sequential write (dd bs=1M) and close, until the object is in
#      the bucket (cachefs's and s3fs's close returns then; rclone's
#      --vfs-cache-mode writes returns before its upload, so its time runs
#      until the object appears), vs the same bytes uploaded directly with
#      boto3's multipart upload_file (the server's write limit here);
#   2. torch.save of a ~1 GiB state dict (Debian python3-torch);
#   3. 1000 files of 100 KiB created and written, files/s until all are in
#      the bucket, vs s3fs and rclone.
# Figures are medians of RUNS runs; every object is checked on the server.
#
# usage: perf/write.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch, default /var/tmp/cachefs-write), RUNS (default 3)
{
set -eu -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-write}
runs=${RUNS:-3}
mnt=$work/mnt
PY3=/usr/bin/python3
. "$src/perf/lib.sh"

[ "$(id -u)" = 0 ] || { echo "perf/write.sh: run as root" >&2; exit 1; }
for t in s3fs rclone curl node; do
	command -v $t >/dev/null || { echo "perf/write.sh: $t missing (tools/install-deps.sh)" >&2; exit 1; }
done
rm -rf "$work/data" "$work/staging"
mkdir -p "$mnt"
umount_all() { fusermount3 -u -q "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; }
trap 'umount_all; [ -z "${server:-}" ] || kill $server 2>/dev/null' EXIT
s3rver_start bench
s3tool() { $PY3 "$src/tests/s3tool.py" "$ep" "$@"; }
[ -f "$work/big.bin" ] || head -c $((1 << 30)) /dev/urandom >"$work/big.bin"
sum=$(md5sum <"$work/big.bin" | cut -d' ' -f1)

cfs_mount() { "$bin/cachefs" s3://bench "$mnt" -o "endpoint=$ep,passwd_file=$work/passwd,staging_dir=$work/staging" \
	2>>"$work/cachefs.log"; for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done; }
s3fs_mount() { s3fs_mount_bucket bench; }
rclone_mount() { rclone_mount_bucket bench writes; }
# in_bucket KEY SIZE: waits until the object is in the bucket with that size.
in_bucket() {
	for _ in $(seq 6000); do
		[ "$(s3tool head bench "$1" 2>/dev/null | json 'd["size"]' 2>/dev/null)" = "$2" ] && return 0
		sleep 0.05
	done
	echo "perf/write.sh: $1 never reached the bucket" >&2
	exit 1
}
check() {   # check KEY: the object's bytes are big.bin's
	s3tool get bench "$1" "$work/back.bin"
	[ "$(md5sum <"$work/back.bin" | cut -d' ' -f1)" = "$sum" ] || { echo "perf/write.sh: $1 differs" >&2; exit 1; }
	rm -f "$work/back.bin"
}

# 1. 1 GiB: MB/s from open to the object being in the bucket.
seq_write() {   # seq_write MOUNT-FN KEY
	local t0 t1
	"$1"
	cat "$work/big.bin" >/dev/null
	t0=$(date +%s.%N)
	dd if="$work/big.bin" of="$mnt/$2" bs=1M status=none
	in_bucket "$2" $((1 << 30))
	t1=$(date +%s.%N)
	umount_all; sleep 0.5
	check "$2"
	s3tool delete bench "$2"
	$PY3 -c "print(round($((1 << 30)) / ($t1 - $t0) / 1e6))"
}
boto3_put() {
	cat "$work/big.bin" >/dev/null
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
	s3tool delete bench boto3.bin
}
cfs_seq=$(med seq_write cfs_mount cfs.bin)
row "1 GiB sequential write + close (MB/s)" "$cfs_seq" "$(med boto3_put)" "boto3 upload_file (multipart, 10 threads)"
row "1 GiB sequential write + close (MB/s)" "$cfs_seq" "$(med seq_write s3fs_mount s3fs.bin)" "s3fs"
row "1 GiB sequential write + close (MB/s)" "$cfs_seq" "$(med seq_write rclone_mount rclone.bin)" "rclone --vfs-cache-mode writes, until in the bucket"

# 2. torch.save of a ~1 GiB state dict.
torch_save() {
	local t
	cfs_mount
	t=$($PY3 - "$mnt/model.pt" <<'PY'
import sys, time, torch
state = {f"layer{i}.weight": torch.randn(1 << 22) for i in range(64)}   # 64 x 16 MiB
t0 = time.monotonic()
torch.save(state, sys.argv[1])
print(f"{(64 << 24) / (time.monotonic() - t0) / 1e6:.0f}")
PY
)
	umount_all; sleep 0.5
	s3tool head bench model.pt >/dev/null
	s3tool delete bench model.pt
	echo "$t"
}
if $PY3 -c 'import torch' 2>/dev/null; then
	note "torch.save of a 1 GiB state dict (MB/s)" "$(med torch_save)" "open to close, in the bucket at close"
fi

# 3. 1000 x 100 KiB files.
mkdir -p "$work/small"
for i in $(seq -w 1000); do [ -f "$work/small/f$i" ] || head -c 102400 /dev/urandom >"$work/small/f$i"; done
small() {   # small MOUNT-FN DIR: files/s for cp of 1000 files of 100 KiB into DIR, until all are in the bucket
	local t0 t1
	"$1"
	cat "$work"/small/* >/dev/null
	t0=$(date +%s.%N)
	cp -r "$work/small" "$mnt/$2"
	# rclone uploads after close: wait for the bucket before unmounting (which drops what is pending).
	$PY3 - "$ep" "$2/" <<'PY' || { echo "perf/write.sh: $2 is not all in the bucket" >&2; exit 1; }
import sys, time, botocore.session
c = botocore.session.get_session().create_client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                                                 aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER")
for _ in range(6000):
    n = sum(len(p.get("Contents", [])) for p in c.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=sys.argv[2]))
    if n >= 1000:
        sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
PY
	t1=$(date +%s.%N)
	umount_all; sleep 0.5
	$PY3 -c "print(round(1000 / ($t1 - $t0)))"
}
small_run() { small "$1" "$2-$(date +%s%N)"; }   # a new folder each run
cfs_small=$(med small_run cfs_mount cfs)
row "create + write 1000 x 100 KiB (files/s)" "$cfs_small" "$(med small_run s3fs_mount s3fs)" "s3fs"
row "create + write 1000 x 100 KiB (files/s)" "$cfs_small" "$(med small_run rclone_mount rclone)" "rclone --vfs-cache-mode writes, until in the bucket"

echo
echo "perf/write.sh at $(git -C "$src" rev-parse --short HEAD), RUNS=$runs:"
table write
exit
}
