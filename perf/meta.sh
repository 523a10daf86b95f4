#!/bin/bash
# Measures the metadata design against the build before it (OLD_BUILD, a
# build directory of an earlier commit) in one run:
#   1. O_DIRECT 1 MiB reads of a cached 64 MiB object while 8 lookups wait
#      on a stopped S3 server (SIGSTOP): the slowest read, and all of them;
#   2. 1000 lookups of names no listing answered, 16 at a time, against a
#      live s3rver (requests on the shards' HTTP clients vs blocking calls);
#   3. a local tree of 2000 x 100 KiB files re-read after drop_caches, 4
#      threads: every lookup and open reaches the daemon. The local driver's
#      metadata on the shards (local_meta=shards, what auto picks for a
#      local disk) vs on the metadata threads (local_meta=threads, what it
#      picks for NFS) vs OLD_BUILD.
# Figures are medians of RUNS runs; rows without OLD_BUILD compare the two
# settings of this build.
#
# usage: OLD_BUILD=DIR perf/meta.sh [BUILD_DIR]   (as root)
# env:   BENCH_DIR (scratch, default /var/tmp/cachefs-meta), RUNS (default 3)
set -eu -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
old=${OLD_BUILD:+$(cd "$OLD_BUILD" && pwd)}
work=${BENCH_DIR:-/var/tmp/cachefs-meta}
runs=${RUNS:-3}
mnt=$work/mnt
PY3=/usr/bin/python3
. "$src/perf/lib.sh"

[ "$(id -u)" = 0 ] || { echo "perf/meta.sh: run as root (drops caches)" >&2; exit 1; }
mkdir -p "$mnt"
umount_all() { fusermount3 -u -q "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; }
trap 'umount_all; [ -z "${server:-}" ] || { kill -CONT $server; kill $server; } 2>/dev/null' EXIT
s3rver_start meta
if [ ! -f "$work/.loaded" ]; then
	head -c $((64 << 20)) /dev/urandom >"$work/obj"
	$PY3 "$src/tests/s3tool.py" "$ep" put meta obj.bin "$work/obj"
	"$bin/cachefs-bench" write "$work/tree" --files 2000 --size 100K >/dev/null
	touch "$work/.loaded"
fi

s3_mount() { "$1/cachefs" s3://meta "$mnt" -o "endpoint=$ep,passwd_file=$work/passwd,timeout=10,shards=2"; }

# 1. The slowest cached read during a stall (ms), and how long all 64 took.
stall() {
	s3_mount "$1"
	cat "$mnt/obj.bin" >/dev/null
	kill -STOP "$server"
	for i in $(seq 8); do (stat "$mnt/nothing-$RANDOM-$i" >/dev/null 2>&1 || true) & done
	sleep 1
	$PY3 "$src/tests/direct_read.py" "$mnt/obj.bin" >"$work/read" || true
	kill -CONT "$server"
	wait
	umount_all
	sed "s/.*max_ms=\([0-9.]*\) total_s=\([0-9.]*\).*/\1 \2/" "$work/read"
}
stall_max() { stall "$1" | cut -d' ' -f1; }

# 2. 1000 lookups of unlisted names, 16 at a time (lookups/s).
lookups() {
	s3_mount "$1"
	local t0 t
	t0=$(date +%s.%N)
	seq 1000 | xargs -P16 -I{} sh -c "stat $mnt/missing-{} >/dev/null 2>&1 || true"
	t=$($PY3 -c "print($(date +%s.%N) - $t0)")
	umount_all
	$PY3 -c "print(round(1000 / $t))"
}

# 3. The local tree re-read with caches dropped (MB/s).
tree() {
	"$1/cachefs" "$work/tree" "$mnt" -o "ram_cache=1G${2:+,$2}"
	"$bin/cachefs-bench" read "$mnt" --threads 4 >/dev/null
	local v
	v=$("$bin/cachefs-bench" read "$mnt" --threads 4 --drop-caches --json | json 'd["mbps"]')
	umount_all
	echo "$v"
}

echo "the slowest O_DIRECT read during the stall, ms (new, then ${old:-none}):" >&2
new_stall=$(med stall_max "$bin")
if [ -n "$old" ]; then
	old_stall=$(med stall_max "$old")
	row "slowest cached 1 MiB read while 8 lookups stall (ms)" "$new_stall" "$old_stall" "the build before"
	row "1000 unlisted lookups, 16 at a time (lookups/s)" "$(med lookups "$bin")" "$(med lookups "$old")" \
		"the build before"
	row "2000 x 100 KiB local files, caches dropped (MB/s)" "$(med tree "$bin" local_meta=shards)" \
		"$(med tree "$old")" "the build before"
else
	note "slowest cached 1 MiB read while 8 lookups stall (ms)" "$new_stall" "no older build given"
	note "1000 unlisted lookups, 16 at a time (lookups/s)" "$(med lookups "$bin")" "no older build given"
fi
row "2000 x 100 KiB local files, caches dropped (MB/s)" "$(med tree "$bin" local_meta=threads)" \
	"$(med tree "$bin" local_meta=shards)" "local_meta=shards (this build)"
table meta
