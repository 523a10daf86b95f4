#!/bin/bash
# cachefs-bench measures what it says: the byte counts of each mode match
# the data, on a local directory and through a mount, in text and JSON.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src"
$BENCH write "$T/src/big" --size 64M --bs 1M --json > "$T/w.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["bytes"]==64<<20 and d["mode"]=="write", d' "$T/w.json" \
	|| fail "write JSON"
$BENCH write "$T/src/tree" --files 300 --size 10K > "$T/w.txt"
grep -q "3072000 bytes in 300 file" "$T/w.txt" || fail "tree write: $(cat "$T/w.txt")"
[ "$(find "$T/src/tree" -type f | wc -l)" = 300 ] || fail "tree has the wrong file count"
pass "write modes"

mount_cachefs "$T/src" "$T/mnt" -o ram_cache=128M
for path in "$T/src" "$T/mnt"; do
	$BENCH read "$path/big" --threads 4 --json > "$T/r.json"
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["bytes"]==64<<20 and d["mbps"]>0 and d["errors"]==0, d' "$T/r.json" \
		|| fail "read JSON on $path"
	$BENCH read "$path/tree" --threads 3 > "$T/r.txt"
	grep -q "3072000 bytes in 300 file" "$T/r.txt" || fail "tree read on $path: $(cat "$T/r.txt")"
	$BENCH randread "$path/big" --direct --ios 500 --threads 2 --json > "$T/rr.json"
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["bytes"]==1000*4096 and d["iops"]>0 and d["lat_us"]["p99"]>=d["lat_us"]["p50"]>0, d' "$T/rr.json" \
		|| fail "randread JSON on $path"
done
for workers in "--threads 3" "--procs 2"; do
	# shellcheck disable=SC2086
	$BENCH tree "$T/mnt/tree" $workers --epochs 3 --json > "$T/t.json"
	python3 - "$T/t.json" <<'PY' || fail "tree JSON ($workers): $(cat "$T/t.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["files"] == 300 and d["errors"] == 0 and len(d["epochs"]) == 3, d
for e in d["epochs"]:
    assert e["bytes"] == 3072000 and e["files_per_s"] > 0, e
    assert e["file_lat_us"]["p99"] >= e["file_lat_us"]["p50"] > 0, e
PY
done
$BENCH tree "$T/mnt/tree" --procs 2 > "$T/t.txt"
[ "$(grep -c "300 files, 3072000 bytes" "$T/t.txt")" = 2 ] || fail "tree text: $(cat "$T/t.txt")"
$BENCH read "$T/mnt/big" --direct --bs 1M > "$T/d.txt"
grep -q "67108864 bytes" "$T/d.txt" || fail "O_DIRECT read: $(cat "$T/d.txt")"
pass "read, tree read, O_DIRECT, randread and data-loader epochs (threads and processes)"

if $BENCH read "$T/nothing" 2>"$T/err"; then fail "read of a missing path succeeded"; fi
grep -q "cannot stat" "$T/err" || fail "missing path message: $(cat "$T/err")"
if $BENCH sideways "$T/src" 2>/dev/null; then fail "unknown mode accepted"; fi
pass "bad input"
unmount_cachefs "$T/mnt"
