#!/bin/bash
# -o metrics=ADDR:PORT: Prometheus text on /metrics, scraped while a file is
# read and after, valid for promtool, with counters that match the reads.
. "$(dirname "$0")/../lib.sh"

command -v promtool >/dev/null || skip "promtool not installed (Debian package prometheus)"
command -v curl >/dev/null || skip "curl not installed"

mkdir -p "$T/src"
head -c 50000000 /dev/urandom >"$T/src/big"
port=$(free_port)
mount_logged "$T/src" "$T/m" "$T/log" -o shards=2,metrics=127.0.0.1:"$port"

scrape() { curl -sf "http://127.0.0.1:$port/metrics"; }
# metric NAME{LABELS}: its value in the last scrape.
metric() { awk -v k="$1" '$1 == k { print $2 }' "$T/scrape"; }

dd if="$T/m/big" of=/dev/null bs=128k iflag=direct 2>/dev/null &
reader=$!
scrape >"$T/during" || fail "no answer on /metrics while reading"
wait "$reader"
promtool check metrics <"$T/during" || fail "promtool rejects the scrape taken while reading"
scrape >"$T/scrape" || fail "no answer on /metrics"
promtool check metrics <"$T/scrape" || fail "promtool rejects the scrape"
pass "promtool check metrics passes, during and after a read"

[ "$(metric 'cachefs_served_bytes_total{tier="source"}')" = 50000000 ] ||
	fail "source bytes $(metric 'cachefs_served_bytes_total{tier="source"}'), want 50000000"
reads=$(metric 'cachefs_fuse_requests_total{op="read"}')
[ "$reads" -ge 381 ] || fail "only $reads READ requests counted for 50 MB in 128 KiB reads"
fetches=$(metric cachefs_source_reads_total)
[ "$fetches" = 48 ] || fail "$fetches source reads, want 48 pages of 1 MiB"
[ "$(metric 'cachefs_source_request_duration_seconds_count{op="read"}')" = "$fetches" ] ||
	fail "the latency histogram counts $(metric 'cachefs_source_request_duration_seconds_count{op="read"}') reads, not $fetches"
[ "$(metric 'cachefs_source_request_duration_seconds_bucket{op="read",le="+Inf"}')" = "$fetches" ] ||
	fail "the +Inf bucket does not hold every read"
for op in stat open; do
	[ "$(metric "cachefs_source_request_duration_seconds_count{op=\"$op\"}")" -ge 1 ] ||
		fail "no $op in the source latency histogram"
done
ra=$(metric cachefs_readahead_window_bytes_count)
[ "$ra" -ge 1 ] && [ "$(metric cachefs_readahead_window_bytes_sum)" -ge $((ra << 20)) ] ||
	fail "read-ahead windows: $ra counted, sum $(metric cachefs_readahead_window_bytes_sum)"
[ "$(metric 'cachefs_pinned_bytes{tier="ram"}')" = 0 ] && [ "$(metric 'cachefs_pinned_limit_bytes{tier="ram"}')" -gt 0 ] ||
	fail "pinned bytes and limit"
# The kernel sends RELEASE after close returns: give it a moment.
for _ in $(seq 100); do [ "$(metric cachefs_open_files)" = 0 ] && break; sleep 0.05; scrape >"$T/scrape"; done
[ "$(metric cachefs_open_files)" = 0 ] || fail "open files $(metric cachefs_open_files) after the reader closed"
[ "$(metric cachefs_shards)" = 2 ] || fail "shards"
pass "counters match: $reads READs, $fetches source reads in the histogram, 50000000 source bytes, $ra read-ahead windows"

exec 3<"$T/m/big"
scrape >"$T/scrape"
[ "$(metric cachefs_open_files)" = 1 ] || fail "open files $(metric cachefs_open_files) with one open"
exec 3<&-
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/other")
[ "$code" = 404 ] || fail "/other answered $code"
pass "open files gauge, 404 elsewhere"

mkdir -p "$T/m2"
if "$CACHEFS" "$T/src" "$T/m2" -o metrics=127.0.0.1:"$port" 2>"$T/err"; then fail "metrics on a port in use: mounted"; fi
grep -q "metrics=127.0.0.1:$port: cannot listen there: Address already in use" "$T/err" || fail "port in use: $(cat "$T/err")"
! mountpoint -q "$T/m2" || fail "port in use: left a mount"
echo "  port in use: $(cat "$T/err")"
unmount_cachefs "$T/m"
must_refuse "metrics without a port" "want ADDR:PORT" "$T/src" -o metrics=localhost
pass "bad addresses refused before mounting"
