#!/bin/bash
# Slow and idle clients of the metrics address do not lock out scrapes: 64
# connections that trickle a header line a second or send nothing, while
# 300 scrapers make 3000 requests. Every scrape succeeds, every slow client
# is cut off within the request deadline, and a read through the mount in
# the meantime is byte-exact.
. "$(dirname "$0")/../lib.sh"

command -v curl >/dev/null || skip "curl not installed"
mkdir -p "$T/src"
head -c $((64 << 20)) /dev/urandom >"$T/src/f"
port=$(free_port)
mount_logged "$T/src" "$T/m" "$T/log" -o shards=2,metrics=127.0.0.1:"$port"

cmp "$T/src/f" "$T/m/f" &
reader=$!
$PY3 "$top_srcdir/tests/web_hostile.py" 127.0.0.1 "$port" --slow 64 --scrapers 300 --each 10 >"$T/res" ||
	fail "scrapes failed: $(cat "$T/res")"
wait $reader || fail "a read during the attack got other bytes"
python3 - "$T/res" <<'PY' || fail "$(cat "$T/res")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["done"] == 3000 and d["failed"] == 0, d
assert d["slow_cut"] == 64, d
assert d["slowest"] < 5, d
PY
cut=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '$1 == "cachefs_http_connections_cut_total" { print $2 }')
# The 32 that trickle are never idle long enough for the idle timeout: the
# deadline cut them; the idle ones go by either.
[ "$cut" -ge 32 ] || fail "cachefs_http_connections_cut_total is $cut, want 32 or more"
pass "3000 scrapes by 300 clients all answered beside 64 slow and idle ones ($(cat "$T/res")); $cut cut off"
unmount_cachefs "$T/m"
