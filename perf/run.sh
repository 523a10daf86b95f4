#!/bin/bash
# Benchmarks cachefs against references measured in the same run, on the
# same filesystem: local disk, the local page cache, fio, and perf/memfs (an
# in-memory libfuse file system serving the same bytes: the FUSE limit of
# this machine). Every figure is the median of RUNS runs: the development
# VM's disk and CPU flip between fast and slow states, so single runs mislead.
#
# usage: perf/run.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch space, default /var/tmp/cachefs-perf), SIZE_MIB
#        (default 1024), FILES (default 2000), RUNTIME (fio seconds, default 3),
#        RUNS (default 5)
set -eu -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-perf}
size=${SIZE_MIB:-1024}
files=${FILES:-2000}
runtime=${RUNTIME:-3}
runs=${RUNS:-5}
BENCH=$bin/cachefs-bench
. "$src/perf/lib.sh"
big=$work/data/big.bin tree=$work/data/tree mnt=$work/mnt ref=$work/ref

[ "$(id -u)" = 0 ] || { echo "perf/run.sh: run as root (drops caches, sets read-ahead)" >&2; exit 1; }
for b in cachefs cachefs-bench perf/memfs; do
	[ -x "$bin/$b" ] || { echo "perf/run.sh: $bin/$b missing; build first" >&2; exit 1; }
done
command -v fio >/dev/null || { echo "perf/run.sh: fio missing (tools/install-deps.sh)" >&2; exit 1; }

mkdir -p "$work/data" "$mnt" "$ref"
umount_all() { for m in "$mnt" "$ref"; do fusermount3 -u -q "$m" 2>/dev/null || true; done; }
umount_all
trap umount_all EXIT
if [ ! -f "$big" ] || [ "$(stat -c %s "$big")" != $((size << 20)) ]; then
	head -c $((size << 20)) /dev/urandom > "$big"
fi
[ -d "$tree" ] || "$BENCH" write "$tree" --files "$files" --size 100K >/dev/null

mbps() { json 'd["mbps"]'; }
cfs_mount() { "$bin/cachefs" "$work/data" "$mnt" -o ram_cache=$((size * 2 + 512))M"${1:+,$1}"; }
ref_mount() {
	"$bin/perf/memfs" "$big" "$ref"
	echo 4096 > "/sys/class/bdi/$(mountpoint -d "$ref")/read_ahead_kb"
}
seqread() { "$BENCH" read "$@" --json | mbps; }
treeread() { "$BENCH" read "$1" --threads 4 --drop-caches --json | mbps; }
fio_iops() {
	fio --name=rr --filename="$1" --rw=randread --bs=4k --direct=1 --ioengine=io_uring \
		--iodepth=32 --numjobs=2 --group_reporting --runtime="$runtime" --time_based \
		--output-format=json 2>/dev/null |
		json 'd["jobs"][0]["read"]["iops"]'
}
# A cold cachefs read needs a fresh mount: an empty RAM tier.
cold_big() { cfs_mount; seqread "$mnt/big.bin" --drop-caches; fusermount3 -u "$mnt"; }
cold_tree() { cfs_mount; treeread "$mnt/tree"; fusermount3 -u "$mnt"; }

# 1. Cold: local disk after drop_caches vs cachefs's first read.
row "1 GiB sequential, cold (MB/s)" "$(med cold_big)" "$(med seqread "$big" --drop-caches)" \
	"local disk, caches dropped"

# 2. Warm from the RAM tier, O_DIRECT 1 MiB reads, vs the in-memory reference.
cfs_mount
seqread "$mnt/big.bin" >/dev/null
ref_mount
row "1 GiB sequential, RAM tier, O_DIRECT 1M (MB/s)" \
	"$(med seqread "$mnt/big.bin" --direct --drop-caches)" \
	"$(med seqread "$ref/data" --direct --drop-caches)" "memfs (FUSE limit)"

# 3. 4 KiB random reads, direct, fio io_uring QD32 x 2 jobs.
rr=$(med fio_iops "$mnt/big.bin")
row "4 KiB random read, RAM tier (IOPS)" "$rr" "$(med fio_iops "$ref/data")" "memfs (FUSE limit)"
row "4 KiB random read, RAM tier (IOPS)" "$rr" "$(drop_caches; med fio_iops "$big")" \
	"local disk, fio direct"
umount_all

# 4. Hot: kernel_cache keeps pages in the page cache across opens.
cfs_mount kernel_cache
ref_mount     # memfs always keeps the page cache
seqread "$mnt/big.bin" >/dev/null
seqread "$ref/data" >/dev/null
seqread "$big" >/dev/null
hot=$(med seqread "$mnt/big.bin")
row "1 GiB sequential, hot, kernel_cache (MB/s)" "$hot" "$(med seqread "$big")" "local page cache"
row "1 GiB sequential, hot, kernel_cache (MB/s)" "$hot" "$(med seqread "$ref/data")" "memfs hot (FUSE page cache)"
umount_all

# 5. The tree of small files, 4 readers: cold vs local disk, then warm.
tdisk=$(med treeread "$tree")
row "$files x 100 KiB files, cold, 4 threads (MB/s)" "$(med cold_tree)" "$tdisk" "local disk, caches dropped"
cfs_mount
treeread "$mnt/tree" >/dev/null
row "$files x 100 KiB files, warm, 4 threads (MB/s)" "$(med treeread "$mnt/tree")" "$tdisk" \
	"local disk, caches dropped"
umount_all

table tiers
