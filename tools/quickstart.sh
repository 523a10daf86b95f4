#!/bin/bash
# The main job on an embedded default: install, build, make a sample dataset,
# mount it through cachefs with a RAM tier and an SSD store, read it cold and
# then warm with cachefs-bench, restart the daemon and read it from the SSD
# store, print the speed-ups, unmount. Run as root from the source tree.
set -eu -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=${CACHEFS_DEMO_DIR:-/var/tmp/cachefs-demo}
cd "$src"

./tools/install-deps.sh
if [ ! -x _build/release/cachefs ]; then
	autoreconf -fi >/dev/null
	mkdir -p _build/release
	(cd _build/release && "$src/configure" -q >/dev/null && make -s -j"$(nproc)" >/dev/null)
fi
bin=$src/_build/release

mkdir -p "$work/data" "$work/mnt"
fusermount3 -u -q "$work/mnt" 2>/dev/null || true
if [ ! -f "$work/data/train-000.bin" ]; then
	echo "creating a 1 GiB sample dataset in $work/data"
	"$bin/cachefs-bench" write "$work/data/train-000.bin" --size 1G >/dev/null
	"$bin/cachefs-bench" write "$work/data/images" --files 2000 --size 100K >/dev/null
fi

opts=ram_cache=2G,ssd_cache=$work/cache.store:2G
rm -f "$work/cache.store"                   # a cold start every time
"$bin/cachefs" "$work/data" "$work/mnt" -o "$opts"
trap 'fusermount3 -u -q "$work/mnt" 2>/dev/null || true' EXIT

mbps() { sed -n 's/.*"mbps":\([0-9.]*\).*/\1/p'; }
echo "reading $work/mnt/train-000.bin (1 GiB), kernel caches dropped before each run"
disk=$("$bin/cachefs-bench" read "$work/data/train-000.bin" --drop-caches --json | mbps)
cold=$("$bin/cachefs-bench" read "$work/mnt/train-000.bin" --drop-caches --json | mbps)
warm=$("$bin/cachefs-bench" read "$work/mnt/train-000.bin" --drop-caches --json | mbps)
printf '  local disk        %8.0f MB/s\n' "$disk"
printf '  cachefs, cold     %8.0f MB/s  (first epoch: from the source)\n' "$cold"
printf '  cachefs, warm     %8.0f MB/s  (next epochs: from the RAM tier)\n' "$warm"

# A restart empties the RAM tier; the SSD store keeps the pages.
fusermount3 -u "$work/mnt"
while pgrep -f -x "$bin/cachefs $work/data $work/mnt -o $opts" >/dev/null; do sleep 0.1; done
"$bin/cachefs" "$work/data" "$work/mnt" -o "$opts"
ssd=$("$bin/cachefs-bench" read "$work/mnt/train-000.bin" --drop-caches --json | mbps)
printf '  after a restart   %8.0f MB/s  (from the SSD store: %s)\n' "$ssd" "$work/cache.store"
printf '  speed-up warm/cold: %.1fx, restarted/cold: %.1fx\n' "$(echo "$warm / $cold" | bc -l)" \
	"$(echo "$ssd / $cold" | bc -l)"
