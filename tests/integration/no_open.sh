#!/bin/bash
# no_open (on with kernel_cache): the kernel opens files without asking, so a
# file in its cache costs no FUSE request; reads without a handle go through
# the inode's shared one. Bytes stay exact, a changed source file is read
# anew after attr_timeout, two sequential readers of one file each get
# read-ahead, and writes fail with EROFS (no_open needs ro).
. "$(dirname "$0")/../lib.sh"

command -v curl >/dev/null || skip "curl not installed"
mkdir -p "$T/src/d"
for i in $(seq 200); do head -c $((RANDOM * 2)) /dev/urandom >"$T/src/d/f$i"; done
head -c $((256 << 20)) /dev/urandom >"$T/src/big"
echo "version one" >"$T/src/changes"
port=$(free_port)
mount_logged "$T/src" "$T/m" "$T/log" -o kernel_cache,attr_timeout=1,shards=2,ro,metrics=127.0.0.1:"$port"

reqs() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v k="cachefs_fuse_requests_total{op=\"$1\"}" '$1 == k { print $2 }'; }
metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }

same_tree "$T/src/d" "$T/m/d" >/dev/null
[ "$(reqs open)" = 1 ] || fail "$(reqs open) OPEN requests for 200 files: want only the first (answered ENOSYS)"
[ "$(reqs release)" = 0 ] || fail "$(reqs release) RELEASE requests under no_open"
[ "$(reqs flush)" -le 1 ] || fail "$(reqs flush) FLUSH requests for 200 files: want at most the first (answered ENOSYS)"
# Tests run in parallel and some drop the kernel's caches: a pass that sent
# READs is tried again; with the cache kept, one of three sends none.
for try in 1 2 3; do
	reads=$(reqs read)
	same_tree "$T/src/d" "$T/m/d" >/dev/null
	sent=$(($(reqs read) - reads))
	[ "$sent" = 0 ] && break
	echo "  pass $((try + 1)) sent $sent READs (caches dropped meanwhile?); again"
done
[ "$sent" = 0 ] || fail "every later pass sent READs ($sent the last): the kernel's cache was not kept"
[ "$(reqs open)" = 1 ] || fail "the second pass sent OPEN requests"
[ "$(metric cachefs_open_files)" = 0 ] || fail "$(metric cachefs_open_files) open files with none open"
[ "$(metric cachefs_shared_handles)" -ge 100 ] || fail "only $(metric cachefs_shared_handles) shared handles after 200 files"
[ "$(reqs flush)" -le 1 ] || fail "the second pass sent FLUSH requests"
pass "200 files read twice byte-exact: 1 OPEN and at most 1 FLUSH in all, no RELEASE, no READ the second time, $(metric cachefs_shared_handles) shared handles"

cat "$T/m/changes" >/dev/null
echo "version two, longer" >"$T/src/changes"
sleep 1.5
[ "$(cat "$T/m/changes")" = "version two, longer" ] || fail "still '$(cat "$T/m/changes")' after the source changed and attr_timeout passed"
pass "a changed source file reads anew once attr_timeout has passed"

# Two sequential readers of one file, far apart, share its handle: each keeps a window.
n0=$(metric cachefs_readahead_window_bytes_count)
s0=$(metric cachefs_readahead_window_bytes_sum)
dd if="$T/m/big" of="$T/a" bs=1M count=96 iflag=direct 2>/dev/null &
a=$!
dd if="$T/m/big" of="$T/b" bs=1M count=96 iflag=direct skip=160 2>/dev/null &
b=$!
wait $a $b
cmp "$T/a" <(head -c $((96 << 20)) "$T/src/big") || fail "reader one got other bytes"
cmp "$T/b" <(tail -c $((96 << 20)) "$T/src/big") || fail "reader two got other bytes"
# (The stream logic itself is unit-tested: test_readahead's two streams.)
n=$(($(metric cachefs_readahead_window_bytes_count) - n0))
mean=$(( ($(metric cachefs_readahead_window_bytes_sum | cut -d. -f1) - ${s0%.*}) / (n ? n : 1) >> 20 ))
[ "$n" -ge 4 ] && [ "$mean" -ge 8 ] ||
	fail "$n read-ahead windows, $mean MiB on average, for two sequential readers"
pass "two sequential O_DIRECT readers of one file: both byte-exact, $n read-ahead windows of $mean MiB on average"

if sh -c 'echo x >>"$1"' sh "$T/m/d/f1" 2>"$T/err"; then fail "an append through the mount succeeded"; fi
grep -q "Read-only file system" "$T/err" || fail "append: $(cat "$T/err"), want EROFS"
if sh -c 'echo x >"$1"' sh "$T/m/d/f2" 2>"$T/err"; then fail "a truncating write succeeded"; fi
grep -q "Read-only file system" "$T/err" || fail "truncate: $(cat "$T/err"), want EROFS"
cmp -s "$T/src/d/f1" "$T/m/d/f1" || fail "f1 changed"
pass "append and truncating writes get EROFS on a ro mount"

unmount_cachefs "$T/m"
grep -qi "error" "$T/log" && fail "errors logged: $(grep -i error "$T/log")"
must_refuse "no_open without kernel_cache" "no_open needs kernel_cache" "$T/src" -o no_open,ro
must_refuse "no_open on a writable mount" "no_open needs ro" "$T/src" -o no_open,kernel_cache
must_refuse "no_open=maybe" "no_open" "$T/src" -o no_open=maybe
pass "no_open without kernel_cache and a bad value are refused"
