#!/bin/bash
# Benchmarks the S3 source against the same local S3 server (s3rver on
# loopback), in one run:
#   1. cold sequential read of a 1 GiB object through cachefs vs 8 parallel
#      ranged `curl` GETs of it (the server's limit here), s3fs (use_cache)
#      and rclone mount (--vfs-cache-mode full), and the CPU-seconds each
#      spent on it (the daemon's; the curls');
#   2. the same read warm (RAM tier; s3fs from its disk cache);
#   3. `cat` of 1000 objects of 100 KiB, cold, after the directory listing,
#      vs s3fs, with cachefs's request count;
#   4. `ls -lR` of 3000 objects (nested, with dir/ markers), cold and warm.
# Figures are medians of RUNS runs.
#
# usage: perf/s3.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch, default /var/tmp/cachefs-s3), RUNS (default 3)
set -eu -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-s3}
runs=${RUNS:-3}
BENCH=$bin/cachefs-bench
mnt=$work/mnt
PY3=/usr/bin/python3
. "$src/perf/lib.sh"

[ "$(id -u)" = 0 ] || { echo "perf/s3.sh: run as root (drops caches)" >&2; exit 1; }
for t in s3fs rclone curl node; do
	command -v $t >/dev/null || { echo "perf/s3.sh: $t missing (tools/install-deps.sh)" >&2; exit 1; }
done
mkdir -p "$mnt" "$work/src"
umount_all() { fusermount3 -u -q "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; }
trap 'umount_all; [ -z "${server:-}" ] || kill $server 2>/dev/null' EXIT
s3rver_start bench
s3tool() { $PY3 "$src/tests/s3tool.py" "$ep" "$@"; }

# Data: reused across runs when the data folder already holds it.
if [ ! -f "$work/data/.loaded" ]; then
	s3_put_random bench big.bin $((1 << 30))
	rm -rf "$work/src" && mkdir -p "$work/src/small" "$work/src/tree"
	$PY3 - "$work/src" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(1000):
    with open(f"{root}/small/s{i:04d}.bin", "wb") as f:
        f.write(os.urandom(100 * 1024))
for i in range(3000):
    d = f"{root}/tree/a{i % 10}/b{i % 7}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:04d}", "wb") as f:
        f.write(os.urandom(512))
PY
	s3tool put-tree bench "$work/src" --markers >/dev/null
	touch "$work/data/.loaded"
fi

elapsed() { local t0; t0=$(date +%s.%N); "$@" >/dev/null; $PY3 -c "print($(date +%s.%N) - $t0)"; }

cfs_opts="endpoint=$ep,passwd_file=$work/passwd,ram_cache=2G"
cfs_mount() { "$bin/cachefs" s3://bench "$mnt" -o "$cfs_opts${1:+,$1}" 2>>"$work/cachefs.log"; }
s3fs_mount() { s3fs_mount_bucket bench; }
rclone_mount() { rclone_mount_bucket bench; }

# 1-2. 1 GiB sequential.
seq_curl() {   # "MB/s CPU-seconds" of 8 parallel ranged GETs
	drop_caches
	curl_par "$ep/bench/big.bin" 8 --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD"
}
seq_read() { "$BENCH" read "$mnt/big.bin" --json | json 'd["mbps"]'; }
cold() {   # cold MOUNT-FN: a fresh mount, caches dropped, one 1 GiB read: "MB/s daemon-CPU-seconds"
	local pid c0 mbps
	drop_caches
	"$1"
	pid=$(mount_pid "$mnt")
	c0=$(cpu_seconds "$pid")
	mbps=$(seq_read)
	echo "$mbps $($PY3 -c "print(round($(cpu_seconds "$pid") - $c0, 2))")"
	umount_all; sleep 0.5
}
warm() {   # warm MOUNT-FN: read once, drop the kernel's caches, read again
	"$1"
	seq_read >/dev/null
	drop_caches
	seq_read
	umount_all; sleep 0.5
}
read -r curl8 curl8_cpu <<<"$(med_pair seq_curl)"
read -r cfs_cold cfs_cpu <<<"$(med_pair cold cfs_mount)"
read -r s3fs_cold s3fs_cpu <<<"$(med_pair cold s3fs_mount)"
read -r rclone_cold rclone_cpu <<<"$(med_pair cold rclone_mount)"
cfs_warm=$(med warm cfs_mount)
s3fs_warm=$(med warm s3fs_mount)
row "1 GiB cold sequential read (MB/s)" "$cfs_cold" "$curl8" "8 parallel ranged curl GETs"
row "1 GiB cold sequential read (MB/s)" "$cfs_cold" "$s3fs_cold" "s3fs use_cache"
row "1 GiB cold sequential read (MB/s)" "$cfs_cold" "$rclone_cold" "rclone mount --vfs-cache-mode full"
row "CPU-seconds for the cold 1 GiB" "$cfs_cpu" "$curl8_cpu" "8 curl processes"
row "CPU-seconds for the cold 1 GiB" "$cfs_cpu" "$s3fs_cpu" "s3fs daemon"
row "CPU-seconds for the cold 1 GiB" "$cfs_cpu" "$rclone_cpu" "rclone daemon"
row "1 GiB warm sequential read (MB/s)" "$cfs_warm" "$s3fs_warm" "s3fs use_cache, warm"

# 3. 1000 objects of 100 KiB with cat, after the directory listing.
small() {   # small MOUNT-FN: files/s
	drop_caches
	"$1"
	ls -l "$mnt/small" >/dev/null
	local t
	t=$(elapsed sh -c "cat '$mnt'/small/* > /dev/null")
	umount_all; sleep 0.5
	$PY3 -c "print(round(1000 / $t))"
}
cfs_small=$(med small cfs_mount)
row "cat 1000 x 100 KiB, cold, after ls (files/s)" "$cfs_small" "$(med small s3fs_mount)" "s3fs use_cache"
"$bin/cachefs" s3://bench "$mnt" -f -o "$cfs_opts" 2>"$work/fg.log" &
fg=$!
wait_mount "$mnt"
ls -l "$mnt/small" >/dev/null
cat "$mnt"/small/* >/dev/null
umount_all
wait $fg || true
reqs=$(grep -o "[0-9]* GET, [0-9]* HEAD, [0-9]* LIST requests" "$work/fg.log" | tail -n1)
note "requests for those 1000 files after the listing" "${reqs%%;*}" "cachefs log, one mount"

# 4. ls -lR of 3000 objects.
lsr() {   # lsr MOUNT-FN: seconds for a cold ls -lR, then a warm one
	drop_caches
	"$1"
	local c w
	c=$(elapsed ls -lR "$mnt/tree")
	w=$(elapsed ls -lR "$mnt/tree")
	umount_all; sleep 0.5
	echo "$c $w"
}
read -r cc cw <<< "$(lsr cfs_mount)"
read -r sc sw <<< "$(lsr s3fs_mount)"
row "ls -lR 3000 objects, cold (files/s)" "$($PY3 -c "print(round(3000 / $cc))")" \
	"$($PY3 -c "print(round(3000 / $sc))")" "s3fs"
row "ls -lR 3000 objects, warm (files/s)" "$($PY3 -c "print(round(3000 / $cw))")" \
	"$($PY3 -c "print(round(3000 / $sw))")" "s3fs"

echo
echo "perf/s3.sh at $(git -C "$src" rev-parse --short HEAD), RUNS=$runs:"
table s3
