#!/bin/bash
# Stale-if-error: with the S3 server stopped and every cached answer past
# dir_cache_ttl, `ls -l`, `stat` and `cat` of every file of a listed and
# fully cached directory still succeed byte-exact, logged once per outage;
# names never seen fail with EIO; after the server is back, new names
# resolve again. With stale_if_error=0 the same listing fails.
. "$(dirname "$0")/../lib.sh"

s3_start data
mkdir -p "$T/tree/ds/sub"
for i in $(seq 20); do head -c $((i * 3000)) /dev/urandom >"$T/tree/ds/f$i"; done
head -c $((3 << 20)) /dev/urandom >"$T/tree/ds/big"      # three pages
head -c 5000 /dev/urandom >"$T/tree/ds/sub/deep"
$S3TOOL "$S3_EP" put-tree data "$T/tree" --markers
opts="$S3_OPTS,timeout=3,dir_cache_ttl=1,shards=2"

# offline [OPTS SUFFIX]: the outage, then the server back, on a mount with OPTS.
offline() {
	mount_logged s3://data "$T/m" "$T/log" -o "$opts${1:+,$1}"
	ls -lR "$T/m/ds" >"$T/ls.before"
	same_tree "$T/tree/ds" "$T/m/ds" >/dev/null     # every file read: its pages are cached
	kill -STOP "$S3_PID"
	sleep 1.5                                        # every listing and stat is past its TTL
	echo 3 >/proc/sys/vm/drop_caches                 # and the kernel must ask the daemon again
	t=$(date +%s%N)
	ls -lR "$T/m/ds" >"$T/ls.during" || fail "ls -lR with the server stopped"
	diff "$T/ls.before" "$T/ls.during" || fail "the listing differs with the server stopped"
	for f in $(cd "$T/tree/ds" && find . -type f); do
		stat "$T/m/ds/$f" >/dev/null || fail "stat $f with the server stopped"
	done
	same_tree "$T/tree/ds" "$T/m/ds" >/dev/null || fail "cat with the server stopped"
	ms=$((($(date +%s%N) - t) / 1000000))
	echo "  ls -lR, stat and cat of 22 files with the server stopped: $ms ms"
	# One timeout for the first call that found the server down; the rest at once.
	[ "$ms" -lt 8000 ] || fail "offline answers took $ms ms: each waited for the server"
	[ "$(grep -c "source unreachable" "$T/log")" = 1 ] || fail "the outage is not logged once: $(grep unreachable "$T/log")"
	grep -q "serving cached metadata for up to 86400 s" "$T/log" || fail "outage line: $(grep unreachable "$T/log")"
	if stat "$T/m/ds/never-seen" 2>"$T/err"; then fail "a name never seen resolved offline"; fi
	grep -q "No such file" "$T/err" || fail "a name not in a listed directory: $(cat "$T/err")"
	if stat "$T/m/other" 2>"$T/err"; then fail "a name never seen resolved offline"; fi
	grep -q "Input/output error" "$T/err" || fail "a name never seen: $(cat "$T/err")"
	pass "offline${1:+ ($1)}: listings, attributes and cached bytes served; unknown names fail"

	kill -CONT "$S3_PID"
	echo fresh >"$T/fresh"
	$S3TOOL "$S3_EP" put data "ds/fresh${2:-}" "$T/fresh"
	for _ in $(seq 50); do [ -e "$T/m/ds/fresh${2:-}" ] && break; sleep 0.2; done
	[ "$(cat "$T/m/ds/fresh${2:-}")" = fresh ] || fail "a new name does not show once the server is back"
	cp "$T/fresh" "$T/tree/ds/fresh${2:-}"
	grep -q "source answers again" "$T/log" || fail "no line for the end of the outage: $(cat "$T/log")"
	unmount_cachefs "$T/m"
	pass "after the outage${1:+ ($1)}, new names resolve"
}
offline
# With kernel_cache (so no_open): reads arrive without a handle and open the
# inode's shared one during the outage; the time limit above holds them too.
offline kernel_cache 2

# stale_if_error=0: nothing stale is served.
mount_logged s3://data "$T/m" "$T/log0" -o "$opts,stale_if_error=0"
ls -l "$T/m/ds" >/dev/null
kill -STOP "$S3_PID"
sleep 1.5
echo 3 >/proc/sys/vm/drop_caches
if ls -l "$T/m/ds" >/dev/null 2>"$T/err"; then kill -CONT "$S3_PID"; fail "stale_if_error=0 served a stale listing"; fi
kill -CONT "$S3_PID"
grep -q "Input/output error" "$T/err" || fail "stale_if_error=0: $(cat "$T/err")"
grep -q "stale_if_error=0" "$T/log0" || fail "outage line with stale_if_error=0: $(cat "$T/log0")"
unmount_cachefs "$T/m"
pass "stale_if_error=0 serves nothing stale"
