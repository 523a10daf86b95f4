#!/bin/bash
# Small-file epochs, the way a data loader reads an image folder: 5000
# files of 15-35 KB in 10 class folders on s3rver, read whole in a new
# shuffled order each epoch by 2 worker processes (cachefs-bench tree).
# In one run, medians of RUNS:
#   - the local page cache: the same tree on local disk, its second epoch;
#   - cachefs (kernel_cache), s3fs (use_cache) and rclone mount (--vfs-cache-mode
#     full) over the same bucket: epoch 1 (cold, after a fresh mount and
#     drop_caches) and epoch 2;
#   - the FUSE requests cachefs served per file in epoch 2, by operation.
# Each epoch is a new cachefs-bench process, as a new DataLoader would be.
# Results also go to perf/results/smallfiles*.csv for perf/charts.sh.
#
# usage: perf/smallfiles.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch, default /var/tmp/cachefs-small), RUNS (default 5),
#        CFS_OPTS (extra cachefs -o options), PEERS=0 (skip s3fs and rclone)
set -eu -o pipefail
shopt -s inherit_errexit
{   # read to the end before running: the script may be edited while it runs
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-small}
runs=${RUNS:-5}
peers=${PEERS:-1}
BENCH=$bin/cachefs-bench
mnt=$work/mnt
PY3=/usr/bin/python3
. "$src/perf/lib.sh"

[ "$(id -u)" = 0 ] || { echo "perf/smallfiles.sh: run as root (drops caches)" >&2; exit 1; }
for t in s3fs rclone node; do
	[ "$peers" = 0 ] && [ $t != node ] && continue
	command -v $t >/dev/null || { echo "perf/smallfiles.sh: $t missing (tools/install-deps.sh)" >&2; exit 1; }
done
mkdir -p "$mnt"
umount_all() { fusermount3 -u -q "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; }
trap 'umount_all; [ -z "${server:-}" ] || kill $server 2>/dev/null' EXIT
s3rver_start small
if [ ! -f "$work/data/.loaded" ]; then
	rm -rf "$work/src" && mkdir -p "$work/src"
	$PY3 "$src/perf/mkdataset.py" "$work/src" --files 5000 --classes 10
	# With directory markers, as consoles and most tools write them: rclone
	# lists no directory without one on s3rver.
	$PY3 "$src/tests/s3tool.py" "$ep" put-tree small "$work/src" --markers >/dev/null
	touch "$work/data/.loaded"
fi
nfiles=$(find "$work/src/train" -type f | wc -l)

port=$(free_port)
cfs_mount() {
	"$bin/cachefs" s3://small "$mnt" -o "endpoint=$ep,passwd_file=$work/passwd,ro,kernel_cache,metrics=127.0.0.1:$port${CFS_OPTS:+,$CFS_OPTS}" \
		2>>"$work/cachefs.log"
}
s3fs_mount() { s3fs_mount_bucket small; }
rclone_mount() { rclone_mount_bucket small; }
none_mount() { :; }
# FUSE requests served so far, "op=count ..." from cachefs's /metrics.
fuse_reqs() {
	curl -s "http://127.0.0.1:$port/metrics" |
		sed -n 's/^cachefs_fuse_requests_total{op="\([a-z]*\)"} \([0-9]*\)$/\1=\2/p' | tr '\n' ' '
}
epoch() {   # epoch DIR SEED: files/s of one epoch
	"$BENCH" tree "$1" --procs 2 --epochs 1 --seed "$2" --json | json 'd["epochs"][0]["files_per_s"]'
}
# one MOUNT-FN DIR: "epoch1 epoch2" files/s, after a fresh mount and drop_caches
one() {
	drop_caches
	"$1"
	local e1 e2
	e1=$(epoch "$2" 1)
	[ "$1" = cfs_mount ] && fuse_reqs >"$work/reqs1"
	e2=$(epoch "$2" 2)
	[ "$1" = cfs_mount ] && fuse_reqs >"$work/reqs2"
	[ "$1" = none_mount ] || { umount_all; sleep 0.5; }
	echo "$e1 $e2"
}
measure() {   # measure NAME MOUNT-FN DIR: sets NAME_e1 and NAME_e2 (medians)
	local a=() b=() r
	for _ in $(seq "$runs"); do
		r=$(one "$2" "$3")
		a+=("${r% *}")
		b+=("${r#* }")
	done
	printf -v "${1}_e1" '%s' "$(median "${a[@]}")"
	printf -v "${1}_e2" '%s' "$(median "${b[@]}")"
}

measure local none_mount "$work/src/train"
measure cfs cfs_mount "$mnt/train"
if [ "$peers" != 0 ]; then
	measure s3fs s3fs_mount "$mnt/train"
	measure rclone rclone_mount "$mnt/train"
fi

row "epoch 2, $nfiles small files (files/s)" "$cfs_e2" "$local_e2" "local page cache, epoch 2"
if [ "$peers" != 0 ]; then
	row "epoch 2, $nfiles small files (files/s)" "$cfs_e2" "$s3fs_e2" "s3fs use_cache, epoch 2"
	row "epoch 2, $nfiles small files (files/s)" "$cfs_e2" "$rclone_e2" "rclone --vfs-cache-mode full, epoch 2"
	row "epoch 1 (cold), $nfiles small files (files/s)" "$cfs_e1" "$s3fs_e1" "s3fs use_cache, epoch 1"
	row "epoch 1 (cold), $nfiles small files (files/s)" "$cfs_e1" "$rclone_e1" "rclone --vfs-cache-mode full, epoch 1"
fi
# Requests per file in the last epoch 2 measured.
per_file=$($PY3 - "$nfiles" "$(cat "$work/reqs1")" "$(cat "$work/reqs2")" <<'PY'
import sys
n = int(sys.argv[1])
a = dict(kv.split("=") for kv in sys.argv[2].split())
b = dict(kv.split("=") for kv in sys.argv[3].split())
d = {k: (int(b[k]) - int(a.get(k, 0))) / n for k in b}
print(f"{sum(d.values()):.2f}|" + (", ".join(f"{k} {v:.2f}" for k, v in d.items() if v >= 0.005) or "none"))
PY
)
note "FUSE requests per file, epoch 2" "${per_file%%|*}" "${per_file#*|}"
mkdir -p "${RESULTS:-$src/perf/results}"
{
	echo "# $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown) $(date +%F)"
	echo "system,epoch,files_per_s"
	for s in local cfs s3fs rclone; do
		v1=${s}_e1 v2=${s}_e2
		[ -n "${!v1:-}" ] && echo "$s,1,${!v1}" && echo "$s,2,${!v2}"
	done
} >"${RESULTS:-$src/perf/results}/smallfiles-epochs.csv"
table smallfiles
exit
}
