#!/bin/bash
# Benchmarks the SSD tier against fio on the same file system, in one run:
#   1. sequential 1 MiB O_DIRECT reads of a file served from the SSD store
#      (RAM tier far smaller than the file, kernel caches dropped) vs
#      fio --ioengine=io_uring --direct=1 --rw=read --bs=1M --iodepth=16;
#   2. 4 KiB random reads from the SSD store (page_size=4K) vs fio 4k randread;
#   3. restart-to-warm time of a store holding 100,000 pages;
#   4. peak RSS of a daemon with a 20 GiB store and a 256 MiB RAM tier, and
#      the index memory per store page.
# Figures are medians of RUNS runs.
#
# usage: perf/ssd.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch space on the SSD to test, default
#        /var/tmp/cachefs-ssd), SIZE_MIB (sequential file, default 4096),
#        RUNS (default 3), RUNTIME (random-read seconds, default 5)
set -eu -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-ssd}
size=${SIZE_MIB:-4096}
runs=${RUNS:-3}
runtime=${RUNTIME:-5}
BENCH=$bin/cachefs-bench
mnt=$work/mnt
. "$src/perf/lib.sh"

[ "$(id -u)" = 0 ] || { echo "perf/ssd.sh: run as root (drops caches)" >&2; exit 1; }
command -v fio >/dev/null || { echo "perf/ssd.sh: fio missing (tools/install-deps.sh)" >&2; exit 1; }
mkdir -p "$work/seq" "$work/rand" "$work/small" "$mnt"
umount_all() { fusermount3 -u -q "$mnt" 2>/dev/null || true; }
umount_all
trap umount_all EXIT

mkfile() { [ -f "$1" ] && [ "$(stat -c %s "$1")" = $(($2 << 20)) ] || head -c $(($2 << 20)) /dev/urandom > "$1"; }
mkfile "$work/seq/big.bin" "$size"
mkfile "$work/rand/r.bin" 1024
if [ ! -f "$work/small/.done" ]; then
	# 100,000 pages of 4 KiB: 1000 files of 400 KiB.
	"$BENCH" write "$work/small" --files 1000 --size 400K >/dev/null
	touch "$work/small/.done"
fi

mount_on() {   # mount_on SRC OPTS
	"$bin/cachefs" "$1" "$mnt" -o "$2" 2>>"$work/log"
}
waitpages() {   # waitpages STORE N: until the store's log holds N pages
	for _ in $(seq 600); do
		n=$("$bin/cachefs-fsck" --live --quick "$1" | sed -n 's/.*: \([0-9]*\) pages, .*/\1/p')
		[ "$n" -ge "$2" ] && return 0
		sleep 0.2
	done
	echo "perf/ssd.sh: store $1 never reached $2 pages" >&2
	return 1
}

# cold_cfs SRC OPTS CMD...: CMD on a fresh mount, kernel caches dropped.
cold_cfs() {
	local from=$1 o=$2
	shift 2
	drop_caches
	mount_on "$from" "$o"
	"$@"
	umount_all; sleep 0.5
}

# 1. Sequential from the SSD tier.
store=$work/seq.store
rm -f "$store"
opts=ram_cache=256M,ssd_cache=$store:$((size + 512))M
mount_on "$work/seq" "$opts"
"$BENCH" read "$mnt/big.bin" --direct >/dev/null          # fills the store
waitpages "$store" "$size"
umount_all; sleep 1
seq_read() { "$BENCH" read "$mnt/big.bin" --direct --json | json 'd["mbps"]'; }
seq_fio() {
	drop_caches
	fio --name=seq --filename="$work/seq/big.bin" --rw=read --bs=1M --direct=1 --ioengine=io_uring \
		--iodepth=16 --output-format=json 2>/dev/null | json 'd["jobs"][0]["read"]["bw_bytes"]/1e6'
}
row "${size} MiB sequential 1M O_DIRECT, SSD tier (MB/s)" "$(med cold_cfs "$work/seq" "$opts" seq_read)" "$(med seq_fio)" \
	"fio io_uring QD16, same file system"
rm -f "$store"

# 2. 4 KiB random reads from the SSD tier: 4 KiB pages, a 64 MiB RAM tier.
store=$work/rand.store
rm -f "$store"
opts=ram_cache=64M,page_size=4K,ssd_cache=$store:1280M
mount_on "$work/rand" "$opts"
"$BENCH" read "$mnt/r.bin" --direct >/dev/null
waitpages "$store" 262144
umount_all; sleep 1
fio_rand() {
	fio --name=rr --filename="$1" --rw=randread --bs=4k --direct=1 --ioengine=io_uring \
		--iodepth=32 --numjobs=2 --group_reporting --runtime="$runtime" --time_based \
		--output-format=json 2>/dev/null | json 'd["jobs"][0]["read"]["iops"]'
}
rand_fio() { drop_caches; fio_rand "$work/rand/r.bin"; }
row "4 KiB random read, SSD tier, page_size=4K (IOPS)" "$(med cold_cfs "$work/rand" "$opts" fio_rand "$mnt/r.bin")" \
	"$(med rand_fio)" \
	"fio io_uring QD32 x 2, same file"
rm -f "$store"

# 3. Restart to warm with 100,000 pages in the store.
store=$work/small.store
rm -f "$store"
opts=ram_cache=64M,page_size=4K,ssd_cache=$store:1G
mount_on "$work/small" "$opts"
"$BENCH" read "$mnt" --threads 4 >/dev/null
waitpages "$store" 100000
umount_all; sleep 1
restart() {
	local t0 t1
	t0=$(date +%s.%N)
	mount_on "$work/small" "$opts"
	t1=$(date +%s.%N)
	umount_all; sleep 0.5
	python3 -c "print(f'{$t1 - $t0:.3f}')"
}
warm=$(med restart)
found=$(grep -o "[0-9]* cached pages found in [0-9.]* s" "$work/log" | tail -n1)
note "Restart to warm, store of 100,000 pages (s)" "$warm" "target: under 2 s; $found"
rm -f "$store"

# 4. Peak RSS: 20 GiB store, 256 MiB RAM tier, 64 KiB pages (327,680 slots).
store=$work/rss.store
rm -f "$store"
rss() {   # rss OPTS: VmHWM in KiB after reading 512 MiB through the mount
	mount_on "$work/seq" "$1"
	dd if="$mnt/big.bin" of=/dev/null bs=1M count=512 iflag=direct 2>/dev/null
	local pid
	pid=$(pgrep -f -x "$bin/cachefs $work/seq $mnt -o $1")
	grep VmHWM "/proc/$pid/status" | awk '{print $2}'
	umount_all; sleep 1
}
with=$(rss ram_cache=256M,page_size=64K,ssd_cache=$store:20G)
without=$(rss ram_cache=256M,page_size=64K)
per=$(python3 -c "print(round(($with - $without) * 1024 / (20 * 1024 * 16)))")
note "Index memory per store page, 20 GiB store (bytes)" "$per" "peak RSS $with KiB vs $without KiB without the store"
rm -f "$store"

echo
table ssd
