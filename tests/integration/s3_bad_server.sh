#!/bin/bash
# An S3 server that answers garbage: a listing cut off mid-XML, a key
# outside the listed prefix, a truncated listing without a continuation
# token, names no file system can show, a HEAD without a Content-Length.
# Each costs EIO for that name (or leaves the bad key out) and a log line,
# never a crash or a stalled shard.
. "$(dirname "$0")/../lib.sh"

port=$(free_port)
$PY3 "$top_srcdir/tests/fakes3.py" "$port" b &
PIDS+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/b?list-type=2" && break; sleep 0.1; done
mport=$(free_port)
mount_logged s3://b "$T/m" "$T/log" -o "endpoint=http://127.0.0.1:$port,anonymous,shards=2,timeout=5,metrics=127.0.0.1:$mport"

if stat "$T/m/nolen" >/dev/null 2>"$T/err"; then fail "an object without a Content-Length"; fi
grep -q "Input/output error" "$T/err" || fail "nolen: $(cat "$T/err")"
grep -q "nolen: the server gave no Content-Length" "$T/log" || fail "no log line for nolen: $(cat "$T/log")"
if ls "$T/m/trunc" >/dev/null 2>"$T/err"; then fail "a listing cut off mid-XML"; fi
grep -q "Input/output error" "$T/err" || fail "trunc: $(cat "$T/err")"
grep -q "list s3://b/trunc/: unreadable listing" "$T/log" || fail "no log line for trunc: $(cat "$T/log")"
if ls "$T/m/notoken" >/dev/null 2>"$T/err"; then fail "a truncated listing without a token"; fi
grep -q "without a continuation token" "$T/log" || fail "no log line for notoken: $(cat "$T/log")"
[ "$(ls "$T/m/escape")" = good ] || fail "a key outside the prefix shows: $(ls "$T/m/escape")"
grep -q "other/evil: the server listed it outside the prefix" "$T/log" || fail "no log line for escape: $(cat "$T/log")"
[ "$(ls "$T/m/badnames")" = fine ] || fail "unshowable names: $(ls "$T/m/badnames")"
grep -q "list s3://b/badnames/: 2 keys cannot be shown" "$T/log" || fail "no log line for badnames: $(cat "$T/log")"
ls "$T/m/badnames" >/dev/null
[ "$(grep -c "keys cannot be shown" "$T/log")" = 1 ] || fail "logged more than once"
pass "garbage answers: EIO or a key left out, each with its log line"

[ "$(cat "$T/m/ok.txt")" = hello ] || fail "the good object after the bad answers"
kill -0 "$(daemon_pid "$T/m")" || fail "the daemon died"
curl -sf "http://127.0.0.1:$mport/metrics" >"$T/scrape"
turn=$(awk '$1 ~ /^cachefs_shard_loop_turn_max_seconds/ { if ($2 > m) m = $2 } END { print m + 0 }' "$T/scrape")
awk -v t="$turn" 'BEGIN { exit !(t < 0.05) }' || fail "a shard loop turn took $turn s"
unmount_cachefs "$T/m"
grep -q "error: " "$T/log" && fail "error-level lines: $(grep 'error: ' "$T/log")"
pass "the daemon lives on, no loop turn over $turn s"
