#!/bin/bash
# Three cachefs nodes on this machine sharing one cache (a fixed member
# list, page servers on loopback) over one s3rver bucket, in one run:
#   1. a 1 GiB object read by node 0 cold, then by nodes 1 and 2: source
#      GETs and bytes in all (the target is one copy, not three); MB/s of
#      node 0's cold read (its misses go to the stripes' owners, which read
#      the source), of a node reading from its peers, and of a local RAM hit,
#      against one node alone reading the source and 8 parallel curl GETs;
#   2. a 5000-file image-like tree (about 110 KB a file) read whole with
#      16 threads the same way: files/s and source GETs;
#   3. the Python client (clients/python, fsspec) on the warm cluster:
#      sequential and random 1 MiB reads of the 1 GiB object against the
#      same reads of node 0's FUSE mount (kernel caches dropped).
# All nodes share the machine's cores: a peer read here costs the asking
# node, the owner and the loopback the same CPUs. Figures are medians of
# RUNS runs (fresh mounts each).
#
# usage: perf/cluster.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch, default /var/tmp/cachefs-cluster), RUNS (default 3)
set -eu -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-cluster}
runs=${RUNS:-3}
BENCH=$bin/cachefs-bench
PY3=/usr/bin/python3
. "$src/perf/lib.sh"

[ "$(id -u)" = 0 ] || { echo "perf/cluster.sh: run as root (drops caches)" >&2; exit 1; }
mkdir -p "$work"
umount_all() { for n in 0 1 2 s; do fusermount3 -u -q "$work/m$n" 2>/dev/null || umount -l "$work/m$n" 2>/dev/null || true; done; }
trap 'umount_all; [ -z "${server:-}" ] || kill $server 2>/dev/null' EXIT
s3rver_start bench
s3tool() { $PY3 "$src/tests/s3tool.py" "$ep" "$@"; }

if [ ! -f "$work/data/.loaded" ]; then
	s3_put_random bench big.bin $((1 << 30))
	rm -rf "$work/src" && mkdir -p "$work/src"
	$PY3 - "$work/src/images" <<'PY'
import os, random, sys
rng = random.Random(1)
for i in range(5000):
    d = f"{sys.argv[1]}/c{i % 50:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/img{i:05d}.jpg", "wb") as f:
        f.write(os.urandom(rng.randint(60, 160) * 1000))
PY
	s3tool put-tree bench "$work/src" >/dev/null
	rm -rf "$work/src"
	touch "$work/data/.loaded"
fi

openssl rand -hex 32 > "$work/token"
chmod 600 "$work/token"
P=() M=()
for n in 0 1 2; do P[$n]=$(free_port); M[$n]=$(free_port); done
members="members=127.0.0.1:${P[0]},127.0.0.1:${P[1]},127.0.0.1:${P[2]}"
base="endpoint=$ep,passwd_file=$work/passwd,ram_cache=3G"
mount_node() {   # mount_node N: node N on $work/mN, cold
	mkdir -p "$work/m$1"
	"$bin/cachefs" s3://bench "$work/m$1" -o "$base,serve=127.0.0.1:${P[$1]},cluster_token_file=$work/token" \
		-o "$members,metrics=127.0.0.1:${M[$1]}" 2>>"$work/cachefs$1.log"
}
mount_all() { drop_caches; for n in 0 1 2; do mount_node $n; done; }
mount_single() { drop_caches; mkdir -p "$work/ms"; "$bin/cachefs" s3://bench "$work/ms" -o "$base" 2>>"$work/cachefs.log"; }
metric() {   # metric N NAME{LABELS}, summed over nodes when N is "all"
	local n s=0 v
	for n in $([ "$1" = all ] && echo 0 1 2 || echo "$1"); do
		v=$(curl -s "http://127.0.0.1:${M[$n]}/metrics" | awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }')
		s=$((s + v))
	done
	echo "$s"
}
gets() { metric all 'cachefs_source_requests_total{kind="get"}'; }
src_bytes() { metric all 'cachefs_served_bytes_total{tier="source"}'; }
read_mbps() { "$BENCH" read "$1" --json | json 'd["mbps"]'; }
tree_fps() { "$BENCH" tree "$1" --threads 16 --epochs 1 --json | json 'd["epochs"][0]["files_per_s"]'; }

# three_nodes FN FILE: a cold cluster; FN (printing one figure) on FILE through
# node 0, then node 1, then node 2, caches dropped between. Prints node 0's and
# node 1's figures; the cluster stays mounted.
three_nodes() {
	local first second
	mount_all
	first=$($1 "$work/m0/$2")
	drop_caches
	second=$($1 "$work/m1/$2")
	drop_caches
	$1 "$work/m2/$2" >/dev/null
	echo "$first $second"
}
# alone FN FILE: FN on FILE through one node alone, cold.
alone() { mount_single; $1 "$work/ms/$2"; umount_all; sleep 0.5; }

# 1. The 1 GiB object. One run: "cold peer local gets MB-from-source".
big_run() {
	local firsts g b
	firsts=$(three_nodes read_mbps big.bin)
	g=$(gets) b=$(src_bytes)
	drop_caches
	echo "$firsts $(read_mbps "$work/m0/big.bin") $g $((b / 1000000))"
	umount_all; sleep 0.5
}
curl_run() {
	drop_caches
	curl_par "$ep/bench/big.bin" 8 --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" | cut -d' ' -f1
}
read -r cold peer hit g mb <<<"$(medians big_run)"
single=$(med alone read_mbps big.bin)
curl8=$(med curl_run)
row "1 GiB, node 0 cold, through the owners (MB/s)" "$cold" "$single" "one node alone, cold from the source"
row "1 GiB, node 0 cold, through the owners (MB/s)" "$cold" "$curl8" "8 parallel ranged curl GETs"
row "1 GiB, node 1 after node 0: from peers (MB/s)" "$peer" "$single" "one node alone, cold from the source"
row "1 GiB, node 0 again: local RAM hit (MB/s)" "$hit" "$peer" "a read from peers"
note "source GETs for 3 nodes reading 1 GiB" "$g" "256 stripes of 4 MiB: at most 256"
note "MB read from the source for 3 nodes reading 1 GiB" "$mb" "one copy is 1074"

# 2. The 5000-file tree. One run: "cold-fps peer-fps gets".
tree_run() { echo "$(three_nodes tree_fps images) $(gets)"; umount_all; sleep 0.5; }
read -r tcold tpeer tg <<<"$(medians tree_run)"
tsingle=$(med alone tree_fps images)
row "5000 files, node 0 cold, through the owners (files/s)" "$tcold" "$tsingle" "one node alone, cold"
row "5000 files, node 1 after node 0: from peers (files/s)" "$tpeer" "$tsingle" "one node alone, cold"
note "source GETs for 3 nodes reading 5000 files" "$tg" "one copy is 5000"

# 3. The Python client against node 0's FUSE mount, on a warm cluster.
mount_all
read_mbps "$work/m0/big.bin" >/dev/null
pyread() {   # pyread fsspec|fuse seq|rand: MB/s
	drop_caches
	PYTHONPATH=$src/clients/python PYTHONDONTWRITEBYTECODE=1 $PY3 - "$1" "$2" "$work/m0/big.bin" \
		"127.0.0.1:${P[0]},127.0.0.1:${P[1]},127.0.0.1:${P[2]}" "$work/token" <<'PY'
import random, sys, time
how, pattern, path, workers, token = sys.argv[1:]
if how == "fsspec":
    import fsspec
    from cachefs_fsspec import CachefsFileSystem
    fs = CachefsFileSystem(workers=workers, token_file=token)
    f = fs.open("big.bin", "rb")
else:
    f = open(path, "rb", buffering=0)
size, mib = 1 << 30, 1 << 20
t0 = time.monotonic()
if pattern == "seq":
    n = 0
    while chunk := f.read(16 * mib):
        n += len(chunk)
else:
    rng, n = random.Random(7), 0
    for _ in range(512):
        f.seek(rng.randrange(size // mib) * mib)
        n += len(f.read(mib))
print(round(n / (time.monotonic() - t0) / 1e6))
PY
}
row "fsspec client, sequential 1 GiB, warm cluster (MB/s)" "$(med pyread fsspec seq)" "$(med pyread fuse seq)" "node 0's FUSE mount, same reads"
row "fsspec client, 512 random 1 MiB reads (MB/s)" "$(med pyread fsspec rand)" "$(med pyread fuse rand)" "node 0's FUSE mount, same reads"
umount_all
table cluster
