#!/bin/bash
# Benchmarks cachefs against references measured in the same run, on the
# same filesystem: local disk, the local page cache, fio, and perf/memfs (an
# in-memory libfuse file system: the FUSE limit of this machine).
#
# usage: perf/run.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch space, default /var/tmp/cachefs-perf), SIZE_MIB
#        (default 1024), FILES (default 2000), RUNTIME (fio seconds, default 10)
set -eu -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-perf}
size=${SIZE_MIB:-1024}
files=${FILES:-2000}
runtime=${RUNTIME:-10}
BENCH=$bin/cachefs-bench

[ "$(id -u)" = 0 ] || { echo "perf/run.sh: run as root (drops caches, sets read-ahead)" >&2; exit 1; }
for b in cachefs cachefs-bench perf/memfs; do
	[ -x "$bin/$b" ] || { echo "perf/run.sh: $bin/$b missing; build first" >&2; exit 1; }
done
command -v fio >/dev/null || { echo "perf/run.sh: fio missing (tools/install-deps.sh)" >&2; exit 1; }

mkdir -p "$work/data" "$work/mnt" "$work/ref"
umount_all() {
	for m in "$work/mnt" "$work/ref"; do fusermount3 -u -q "$m" 2>/dev/null || true; done
}
umount_all
trap umount_all EXIT
if [ ! -f "$work/data/big.bin" ] || [ "$(stat -c %s "$work/data/big.bin")" != $((size << 20)) ]; then
	head -c $((size << 20)) /dev/urandom > "$work/data/big.bin"
fi
if [ ! -d "$work/data/tree" ]; then
	"$BENCH" write "$work/data/tree" --files "$files" --size 100K >/dev/null
fi

mbps() { python3 -c 'import json,sys; print(json.load(sys.stdin)["mbps"])'; }
iops_bench() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["iops"]))'; }
fio_iops() {
	fio --name=rr --filename="$1" --rw=randread --bs=4k --direct=1 --ioengine=io_uring \
		--iodepth=32 --numjobs=2 --group_reporting --runtime="$runtime" --time_based \
		--output-format=json 2>/dev/null |
		python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}
mount_cachefs() {
	"$bin/cachefs" "$work/data" "$work/mnt" -o ram_cache=$(( size * 2 + 512 ))M"${1:+,$1}"
}
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

rows=()
row() { rows+=("$1|$2|$3|$4|$5"); printf '%-44s %10s %10s  %s\n' "$1" "$2" "$3" "$5" >&2; }
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }

median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

# 1. Cold: local disk after drop_caches vs cachefs's first read after a
# fresh mount. Three alternating rounds, medians: this disk is noisy.
d=() c=()
for _ in 1 2 3; do
	d+=("$("$BENCH" read "$work/data/big.bin" --drop-caches --json | mbps)")
	mount_cachefs
	c+=("$("$BENCH" read "$work/mnt/big.bin" --drop-caches --json | mbps)")
	fusermount3 -u "$work/mnt"
done
disk=$(median "${d[@]}") cold=$(median "${c[@]}")
mount_cachefs
"$BENCH" read "$work/mnt/big.bin" >/dev/null
row "1 GiB sequential, cold (MB/s)" "$cold" "$disk" "local disk, caches dropped" "$(ratio "$cold" "$disk")"

# 2. Warm from the RAM tier, O_DIRECT 1 MiB reads, vs the in-memory reference.
warm=$("$BENCH" read "$work/mnt/big.bin" --direct --drop-caches --json | mbps)
"$bin/perf/memfs" "$work/data/big.bin" "$work/ref"
echo 4096 > "/sys/class/bdi/$(mountpoint -d "$work/ref")/read_ahead_kb"
ref=$("$BENCH" read "$work/ref/data" --direct --drop-caches --json | mbps)
row "1 GiB sequential, RAM tier, O_DIRECT 1M (MB/s)" "$warm" "$ref" "memfs (FUSE limit)" "$(ratio "$warm" "$ref")"

# 3. 4 KiB random reads, direct, fio io_uring QD32 x2 jobs.
rr_cfs=$(fio_iops "$work/mnt/big.bin")
rr_ref=$(fio_iops "$work/ref/data")
drop
rr_disk=$(fio_iops "$work/data/big.bin")
row "4 KiB random read, RAM tier (IOPS)" "$rr_cfs" "$rr_ref" "memfs (FUSE limit)" "$(ratio "$rr_cfs" "$rr_ref")"
row "4 KiB random read, RAM tier (IOPS)" "$rr_cfs" "$rr_disk" "local disk, fio direct" "$(ratio "$rr_cfs" "$rr_disk")"
fusermount3 -u "$work/ref"
fusermount3 -u "$work/mnt"

# 4. Hot: kernel_cache keeps pages in the page cache across opens.
mount_cachefs kernel_cache
"$BENCH" read "$work/mnt/big.bin" >/dev/null
hot=$("$BENCH" read "$work/mnt/big.bin" --json | mbps)
"$BENCH" read "$work/data/big.bin" >/dev/null
pc=$("$BENCH" read "$work/data/big.bin" --json | mbps)
"$bin/perf/memfs" "$work/data/big.bin" "$work/ref"    # memfs always keeps the page cache
"$BENCH" read "$work/ref/data" >/dev/null
memhot=$("$BENCH" read "$work/ref/data" --json | mbps)
row "1 GiB sequential, hot, kernel_cache (MB/s)" "$hot" "$pc" "local page cache" "$(ratio "$hot" "$pc")"
row "1 GiB sequential, hot, kernel_cache (MB/s)" "$hot" "$memhot" "memfs hot (FUSE page cache)" "$(ratio "$hot" "$memhot")"
fusermount3 -u "$work/ref"
fusermount3 -u "$work/mnt"

# 5. The tree of small files, 4 readers: cold vs local disk (three
# alternating rounds, medians), then warm.
d=() c=()
for _ in 1 2 3; do
	d+=("$("$BENCH" read "$work/data/tree" --threads 4 --drop-caches --json | mbps)")
	mount_cachefs
	c+=("$("$BENCH" read "$work/mnt/tree" --threads 4 --drop-caches --json | mbps)")
	fusermount3 -u "$work/mnt"
done
tdisk=$(median "${d[@]}") tcold=$(median "${c[@]}")
mount_cachefs
"$BENCH" read "$work/mnt/tree" --threads 4 >/dev/null
twarm=$("$BENCH" read "$work/mnt/tree" --threads 4 --drop-caches --json | mbps)
row "$files x 100 KiB files, cold, 4 threads (MB/s)" "$tcold" "$tdisk" "local disk, caches dropped" "$(ratio "$tcold" "$tdisk")"
row "$files x 100 KiB files, warm, 4 threads (MB/s)" "$twarm" "$tdisk" "local disk, caches dropped" "$(ratio "$twarm" "$tdisk")"
fusermount3 -u "$work/mnt"

echo "| measurement | cachefs | reference | reference is | ratio |"
echo "|---|---:|---:|---|---:|"
for r in "${rows[@]}"; do
	IFS='|' read -r what a b ref rat <<< "$r"
	printf '| %s | %.0f | %.0f | %s | %s |\n' "$what" "$a" "$b" "$ref" "$rat"
done
