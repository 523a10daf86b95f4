#!/bin/bash
# Cold reads from a fast local HTTP server at the network limit: nginx
# (Debian nginx-light, sendfile, on 127.0.0.1, the file in the page cache)
# serving a 1 GiB file, in one run, medians of RUNS:
#   - 8 parallel ranged curl GETs of it (the server's and loopback's limit),
#     with curl's CPU-seconds per GiB;
#   - perf/memfs's first buffered read (the FUSE limit: a file system that
#     has every byte in memory);
#   - cachefs's first read through the HTTP source (a fresh mount: an empty
#     RAM tier), buffered, with the daemon's CPU-seconds per GiB: as mounted
#     by default (ram_prefault=256M), with ram_prefault=off, and with
#     ram_prefault=all once the whole RAM tier is faulted in (a daemon that
#     has run a while), which takes the kernel's zeroing and mapping of fresh
#     memory off the read;
#   - cached reads beside a cold stream: 64 KiB O_DIRECT random reads of a
#     64 MiB file already in the RAM tier, alone and while the cold 1 GiB read
#     runs on the same mount (reads/s and p99), with the longest turn of a
#     shard's loop (a cached read queued on a shard waits out its turn).
# Results also go to perf/results/http.csv for perf/charts.sh.
#
# usage: perf/http.sh [BUILD_DIR]   (as root; default BUILD_DIR _build/release)
# env:   BENCH_DIR (scratch, default /var/tmp/cachefs-http), RUNS (default 5)
set -eu -o pipefail
shopt -s inherit_errexit
{   # read to the end before running: the script may be edited while it runs
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$src/_build/release}" && pwd)
work=${BENCH_DIR:-/var/tmp/cachefs-http}
runs=${RUNS:-5}
BENCH=$bin/cachefs-bench
mnt=$work/mnt ref=$work/ref
PY3=/usr/bin/python3
. "$src/perf/lib.sh"

[ "$(id -u)" = 0 ] || { echo "perf/http.sh: run as root (drops caches)" >&2; exit 1; }
for t in nginx curl; do
	command -v $t >/dev/null || { echo "perf/http.sh: $t missing (tools/install-deps.sh)" >&2; exit 1; }
done
mkdir -p "$work/data" "$work/nginx" "$mnt" "$ref"
umount_all() { for m in "$mnt" "$ref"; do fusermount3 -u -q "$m" 2>/dev/null || true; done; }
umount_all
big=$work/data/big.bin hot=$work/data/hot.bin
[ -f "$big" ] && [ "$(stat -c %s "$big")" = $((1 << 30)) ] || head -c $((1 << 30)) /dev/urandom >"$big"
[ -f "$hot" ] && [ "$(stat -c %s "$hot")" = $((64 << 20)) ] || head -c $((64 << 20)) /dev/urandom >"$hot"
printf 'big.bin\t%s\nhot.bin\t%s\n' $((1 << 30)) $((64 << 20)) >"$work/manifest.tsv"

port=$(free_port)
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
	sendfile on;
	tcp_nopush on;
	access_log off;
	keepalive_requests 100000;
	client_body_temp_path $work/nginx;
	proxy_temp_path $work/nginx;
	fastcgi_temp_path $work/nginx;
	uwsgi_temp_path $work/nginx;
	scgi_temp_path $work/nginx;
	server { listen 127.0.0.1:$port; root $work/data; }
}
EOF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"
trap 'umount_all; kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true' EXIT
url=http://127.0.0.1:$port/big.bin
for _ in $(seq 50); do curl -sf -o /dev/null -r 0-0 "$url" && break; sleep 0.1; done
warm_source() { cat "$big" "$hot" >/dev/null; }   # nginx sends from the page cache

curl8() { warm_source; curl_par "$url" 8; }
memfs_first() {
	"$bin/perf/memfs" "$big" "$ref"
	echo 4096 >"/sys/class/bdi/$(mountpoint -d "$ref")/read_ahead_kb"
	drop_caches
	"$BENCH" read "$ref/data" --json | json 'd["mbps"]'
	fusermount3 -u "$ref"
}
# cfs_cold [OPTS]: "MB/s CPU-seconds" of cachefs's first read, buffered, on a
# fresh mount; with ram_prefault=all, once the RAM tier is faulted in.
cfs_cold() {
	warm_source
	"$bin/cachefs" "$url" "$mnt" -f -o "ram_cache=2G${1:+,$1}" 2>>"$work/cachefs.log" &
	local pid=$! mbps t0 t1 f=-1 g=0
	wait_mount "$mnt"
	while [ "${1:-}" = ram_prefault=all ] && [ "$f" != "$g" ]; do
		f=$g
		sleep 0.5
		g=$("$bin/cachefsctl" -m "$mnt" status --json | json 'd["ram"]["faulted"]')
	done
	t0=$(cpu_seconds $pid)
	mbps=$("$BENCH" read "$mnt/big.bin" --json | json 'd["mbps"]')
	t1=$(cpu_seconds $pid)
	fusermount3 -u "$mnt"
	wait "$pid" || true
	echo "$mbps $($PY3 -c "print(round($t1 - $t0, 2))")"
}

# cached_reads SECS: "reads/s p99-ms" of 64 KiB O_DIRECT random reads of hot.bin.
cached_reads() {
	"$BENCH" randread "$mnt/hot.bin" --direct --bs 64K --runtime "$1" --json |
		$PY3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["iops"]), round(d["lat_us"]["p99"] / 1000, 2))'
}
# cfs_beside: "reads/s p99-ms" of cached 64 KiB O_DIRECT reads alone, the same
# beside a cold read of big.bin (the reads start 0.2 s into it and last 1 s),
# and the longest shard loop turn (ms) of the mount.
cfs_beside() {
	local mp pid cold alone beside turn
	warm_source
	mp=$(free_port)
	"$bin/cachefs" "http://127.0.0.1:$port/" "$mnt" -f \
		-o "manifest=$work/manifest.tsv,ram_cache=2G,metrics=127.0.0.1:$mp" 2>>"$work/cachefs.log" &
	pid=$!
	wait_mount "$mnt"
	"$BENCH" read "$mnt/hot.bin" >/dev/null
	sleep 2   # the prefault of the next 256 MiB of the RAM tier ends: it would slow the reads alone
	alone=$(cached_reads 2)
	"$BENCH" read "$mnt/big.bin" >/dev/null &
	cold=$!
	sleep 0.2
	beside=$(cached_reads 1)
	wait $cold
	turn=$(curl -s "http://127.0.0.1:$mp/metrics" |
		awk '/^cachefs_shard_loop_turn_max_seconds/ { if ($2 > m) m = $2 } END { printf "%.1f", m * 1000 }')
	fusermount3 -u "$mnt"
	wait "$pid" || true
	echo "$alone $beside $turn"
}

c=$(med_pair curl8)
m=$(med memfs_first)
f=$(med_pair cfs_cold)
a=$(med_pair cfs_cold ram_prefault=off)
p=$(med_pair cfs_cold ram_prefault=all)
read -r alone_rate alone_p99 beside_rate beside_p99 turn <<<"$(medians cfs_beside)"
curl_mbps=${c% *} curl_cpu=${c#* } cfs_mbps=${f% *} cfs_cpu=${f#* } pf_mbps=${p% *} pf_cpu=${p#* }
limit=$($PY3 -c "print(min($curl_mbps, $m))")
row "1 GiB cold, HTTP source from nginx (MB/s)" "$cfs_mbps" "$curl_mbps" "8 parallel ranged curl GETs"
row "1 GiB cold, HTTP source from nginx (MB/s)" "$cfs_mbps" "$m" "memfs first buffered read (FUSE limit)"
row "1 GiB cold, HTTP source from nginx (MB/s)" "$cfs_mbps" "$limit" "the lower of the two (target 0.85x)"
row "1 GiB cold, ram_prefault=off (MB/s)" "${a% *}" "$limit" "the lower of the two (target 0.85x)"
row "1 GiB cold, RAM tier faulted in (MB/s)" "$pf_mbps" "$limit" "the lower of the two (target 0.85x)"
row "CPU-seconds per GiB, cold" "$cfs_cpu" "$curl_cpu" "8 curl processes (their CPU)"
row "CPU-seconds per GiB, cold, RAM tier faulted in" "$pf_cpu" "$curl_cpu" "8 curl processes (their CPU)"
row "cached 64 KiB O_DIRECT reads beside the cold read (reads/s)" "$beside_rate" "$alone_rate" "the same reads alone"
row "their p99 latency beside the cold read (ms)" "$beside_p99" "$alone_p99" "the same reads alone"
note "longest shard loop turn, cold read included (ms)" "$turn" "cachefs_shard_loop_turn_max_seconds"
echo
echo "perf/http.sh at $(git -C "$src" rev-parse --short HEAD), RUNS=$runs:"
table http
exit
}
