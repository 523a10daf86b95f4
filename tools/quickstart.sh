#!/bin/bash
# The main job on an embedded default, on object storage: install, build,
# start a local S3 server (s3rver on 127.0.0.1) holding a generated
# image-folder dataset (3000 JPEG-sized files in 10 class folders, and one
# 256 MiB file), mount the bucket through cachefs, read epoch 1 and epoch 2
# the way a data loader does, and compare with reading the bucket directly.
# Shows `cachefsctl status` and the live status page, then cleans up
# (CACHEFS_DEMO_KEEP=1 leaves the mount and the server running). Run as
# root from the source tree.
set -eu -o pipefail
shopt -s inherit_errexit
src=$(cd "$(dirname "$0")/.." && pwd)
work=${CACHEFS_DEMO_DIR:-/var/tmp/cachefs-demo}
keep=${CACHEFS_DEMO_KEEP:-0}
cd "$src"
[ "$(id -u)" = 0 ] || { echo "quickstart: run as root (it installs packages and drops caches)" >&2; exit 1; }

./tools/install-deps.sh
if [ ! -x _build/release/cachefs ]; then
	echo "building cachefs in _build/release"
	autoreconf -fi >/dev/null 2>&1
	mkdir -p _build/release
	(cd _build/release && "$src/configure" -q >/dev/null && make -s -j"$(nproc)" >/dev/null)
fi
bin=$src/_build/release
PY3=/usr/bin/python3
mnt=$work/mnt
mkdir -p "$work" "$mnt"
fusermount3 -u -q "$mnt" 2>/dev/null || true

free_port() { $PY3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
s3port=$(free_port)
ep=http://127.0.0.1:$s3port
web=127.0.0.1:$(free_port)
cleanup() {
	[ "$keep" = 1 ] && return
	fusermount3 -u -q "$mnt" 2>/dev/null || true
	[ -z "${server:-}" ] || kill "$server" 2>/dev/null || true
}
trap cleanup EXIT

# The S3 server, its data kept between runs in $work/s3.
node --openssl-legacy-provider "$src/tests/s3/node_modules/s3rver/bin/s3rver.js" -a 127.0.0.1 -p "$s3port" \
	-d "$work/s3" -s --configure-bucket demo >"$work/s3rver.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -s -o /dev/null "$ep/" && break; sleep 0.1; done
printf 'S3RVER:S3RVER\n' >"$work/passwd"
chmod 600 "$work/passwd"
if [ ! -f "$work/s3/.loaded" ]; then
	echo "creating the dataset (3000 files of 15-35 KB in 10 classes, one 256 MiB file) in bucket 'demo'"
	rm -rf "$work/dataset"
	$PY3 "$src/perf/mkdataset.py" "$work/dataset" --files 3000 --classes 10 --large-mib 256
	$PY3 "$src/tests/s3tool.py" "$ep" put-tree demo "$work/dataset" --markers >/dev/null
	touch "$work/s3/.loaded"
fi

sync; echo 3 >/proc/sys/vm/drop_caches
"$bin/cachefs" s3://demo "$mnt" -o "endpoint=$ep,passwd_file=$work/passwd,ro,kernel_cache,ram_cache=2G,metrics=$web"
echo "mounted s3://demo (at $ep) on $mnt"

field() { $PY3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
epochs=$("$bin/cachefs-bench" tree "$mnt/train" --procs 8 --epochs 2 --json)
e1=$(echo "$epochs" | field 'd["epochs"][0]["files_per_s"]')
e2=$(echo "$epochs" | field 'd["epochs"][1]["files_per_s"]')
direct=$($PY3 "$src/tests/s3tool.py" "$ep" get-all demo train/ 8 | field 'd["files_per_s"]')
big_direct=$($PY3 "$src/tests/s3tool.py" "$ep" get-all demo large.bin 1 | field 'd["mbps"]')
big1=$("$bin/cachefs-bench" read "$mnt/large.bin" --json | field 'd["mbps"]')
big2=$("$bin/cachefs-bench" read "$mnt/large.bin" --direct --json | field 'd["mbps"]')

echo
echo "3000 small files, 8 workers, shuffled order (cachefs-bench tree --procs 8):"
printf '  the bucket directly (boto3, 8 threads)  %8.0f files/s\n' "$direct"
printf '  cachefs, epoch 1 (from S3)              %8.0f files/s  %5.1fx\n' "$e1" "$(echo "$e1 / $direct" | bc -l)"
printf '  cachefs, epoch 2 (cached)               %8.0f files/s  %5.1fx\n' "$e2" "$(echo "$e2 / $direct" | bc -l)"
echo "one 256 MiB file:"
printf '  the bucket directly (boto3, one GET)    %8.0f MB/s\n' "$big_direct"
printf '  cachefs, first read (from S3)           %8.0f MB/s  %5.1fx\n' "$big1" "$(echo "$big1 / $big_direct" | bc -l)"
printf '  cachefs, again (RAM tier, O_DIRECT)     %8.0f MB/s  %5.1fx\n' "$big2" "$(echo "$big2 / $big_direct" | bc -l)"
echo
"$bin/cachefsctl" -m "$mnt" status
echo
echo "status page: http://$web/   metrics: http://$web/metrics"
if [ "$keep" = 1 ]; then
	echo "left running (CACHEFS_DEMO_KEEP=1): stop with  fusermount3 -u $mnt; kill $server"
else
	echo "unmounting and stopping the S3 server (CACHEFS_DEMO_KEEP=1 leaves them running)"
fi
