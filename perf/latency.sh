#!/bin/bash
# Read latency percentiles of 4 KiB random reads, one reader at a time (so
# each figure is one request's round trip, not a queue), in one run:
#   - the local disk (O_DIRECT: every read reaches the device);
#   - the local page cache (a cached file, buffered);
#   - perf/memfs, O_DIRECT (a FUSE round trip to memory: the FUSE floor);
#   - cachefs's RAM tier, O_DIRECT (the file read once before);
#   - cachefs with kernel_cache, buffered (the kernel's cache of a FUSE file).
# Prints p50/p99/p99.9 in microseconds and writes perf/results/latency.csv
# for perf/charts.sh.
#
# usage: perf/latency.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch, default /var/tmp/cachefs-latency), IOS (reads per
#        system, default 20000)
set -eu -o pipefail
shopt -s inherit_errexit
{   # read to the end before running: the script may be edited while it runs
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-latency}
ios=${IOS:-20000}
BENCH=$bin/cachefs-bench
mnt=$work/mnt ref=$work/ref
[ "$(id -u)" = 0 ] || { echo "perf/latency.sh: run as root (drops caches)" >&2; exit 1; }
mkdir -p "$work/data" "$mnt" "$ref"
umount_all() { for m in "$mnt" "$ref"; do fusermount3 -u -q "$m" 2>/dev/null || true; done; }
umount_all
trap umount_all EXIT
big=$work/data/big.bin
[ -f "$big" ] && [ "$(stat -c %s "$big")" = $((256 << 20)) ] || head -c $((256 << 20)) /dev/urandom >"$big"

# lat PATH [ARGS]: "p50 p99 p99.9" in microseconds of $ios random 4 KiB reads.
lat() {
	"$BENCH" randread "$@" --bs 4K --ios "$ios" --json |
		python3 -c 'import json,sys; l=json.load(sys.stdin)["lat_us"]; print(l["p50"], l["p99"], l["p999"])'
}
results=${RESULTS:-$src/perf/results}
mkdir -p "$results"
out=$results/latency.csv
{
	echo "# $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown) $(date +%F)"
	echo "system,p50_us,p99_us,p999_us"
	sync; echo 3 >/proc/sys/vm/drop_caches
	echo "local disk (O_DIRECT),$(lat "$big" --direct | tr ' ' ,)"
	cat "$big" >/dev/null
	echo "local page cache,$(lat "$big" | tr ' ' ,)"
	"$bin/perf/memfs" "$big" "$ref"
	echo "memfs (O_DIRECT),$(lat "$ref/data" --direct | tr ' ' ,)"
	fusermount3 -u "$ref"
	"$bin/cachefs" "$work/data" "$mnt" -o ram_cache=1G
	"$BENCH" read "$mnt/big.bin" >/dev/null
	echo "cachefs RAM tier (O_DIRECT),$(lat "$mnt/big.bin" --direct | tr ' ' ,)"
	fusermount3 -u "$mnt"
	"$bin/cachefs" "$work/data" "$mnt" -o ram_cache=1G,kernel_cache
	cat "$mnt/big.bin" >/dev/null
	echo "cachefs kernel_cache,$(lat "$mnt/big.bin" | tr ' ' ,)"
	fusermount3 -u "$mnt"
} >"$out"
echo "perf/latency.sh at $(git -C "$src" rev-parse --short HEAD), $ios reads each, microseconds:"
column -s, -t <(sed 1d "$out")
exit
}
