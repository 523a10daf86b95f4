#!/bin/bash
# cachefsctl pin/unpin: pinned files survive a flood of other reads that
# evicts everything else, in the RAM tier and in the SSD tier; holds are
# remembered across a restart; a pin larger than the limit is refused
# before anything is pinned; a pin that runs into the limit partway is
# rolled back; evict keeps pinned pages; unpin and unpin --all release.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src/pinme/sub" "$T/src/flood" "$T/src/huge"
for i in 1 2 3; do head -c 5000000 /dev/urandom >"$T/src/pinme/p$i"; done
head -c 100000 /dev/urandom >"$T/src/pinme/sub/small"
head -c 5000000 /dev/urandom >"$T/src/ctrl"
for i in $(seq 8); do head -c 20000000 /dev/urandom >"$T/src/flood/f$i"; done
for i in 1 2; do head -c 40000000 /dev/urandom >"$T/src/huge/h$i"; done
sock=$T/ctl.sock

status_field() {   # status_field PYTHON-EXPR-ON-s
	"$CTL" -s "$sock" status --json | /usr/bin/python3 -c "import json, sys; s = json.load(sys.stdin); print($1)"
}
source_bytes() { status_field 's["source_reads"]["bytes"]'; }
pinned_bytes() { status_field 's["pinned"]["bytes"]'; }
# Reads around the kernel's page cache, so every read reaches the daemon.
read_direct() { for f in "$@"; do dd if="$f" of=/dev/null bs=1M iflag=direct 2>/dev/null || fail "reading $f"; done; }
# 320 MB of other reads: evicts whatever is not pinned.
flood() {
	read_direct "$T/m/flood"/f* "$T/m/flood"/f*
}
# pinned_survive TIER: after the control file is read and the flood, the
# pinned tree costs no source read while the control file does.
pinned_survive() {
	read_direct "$T/m/ctrl"
	flood
	local before
	before=$(source_bytes)
	read_direct "$T/m/pinme"/p* "$T/m/pinme/sub/small"
	[ "$(source_bytes)" = "$before" ] || fail "$1: reading pinned files after a flood read $(($(source_bytes) - before)) source bytes"
	read_direct "$T/m/ctrl"
	[ "$(source_bytes)" -ge $((before + 5000000)) ] || fail "$1: the unpinned control file survived the flood: the test proves nothing"
	same_tree "$T/src/pinme" "$T/m/pinme" >/dev/null
}

# ---- RAM tier (no SSD): 64 MiB, holds up to 90% ----
# One shard, so the limit is not split by the page hash: the refusal and
# the rollback below then hold exactly. The SSD part runs two.
mount_logged "$T/src" "$T/m" "$T/log1" -o shards=1,ram_cache=64M,ctl_socket="$sock"
"$CTL" -s "$sock" pin "$T/m/pinme" >"$T/out" 2>&1 || fail "pin: $(cat "$T/out")"
grep -q "job 1 done: 16 pages pinned" "$T/out" || fail "pin did not report 16 pages: $(cat "$T/out")"
# Three files of 4 full pages and a 806912-byte tail, and one of 102400: RAM
# holds count bytes rounded to 4 KiB.
[ "$(pinned_bytes)" = $((3 * (4 << 20) + 3 * 806912 + 102400)) ] || fail "pinned bytes $(pinned_bytes)"
"$CTL" -s "$sock" status | grep -q "^pinned  *14.4M of at most 57.6M (ram tier)" ||
	fail "status: $("$CTL" -s "$sock" status | grep pinned)"
pinned_survive "RAM tier"
pass "RAM tier: 15.1 MB pinned stays cached through 320 MB of other reads; an unpinned file does not"

# evict keeps pinned pages; after unpin it drops them.
"$CTL" -s "$sock" evict "$T/m/pinme" >"$T/out" 2>&1 || fail "evict: $(cat "$T/out")"
grep -q "0 pages dropped, 16 pinned pages kept" "$T/out" || fail "evict of pinned files: $(cat "$T/out")"
"$CTL" -s "$sock" unpin "$T/m/pinme/sub" >"$T/out" 2>&1 || fail "unpin: $(cat "$T/out")"
grep -q "1/1 files, 1 pages unpinned" "$T/out" || fail "unpin of a subtree: $(cat "$T/out")"
"$CTL" -s "$sock" evict "$T/m/pinme" >"$T/out" 2>&1 || fail "evict: $(cat "$T/out")"
grep -q "1 pages dropped, 15 pinned pages kept" "$T/out" || fail "evict after an unpin: $(cat "$T/out")"
pass "evict keeps pinned pages and drops them once unpinned: $(tail -n1 "$T/out")"

# More than the limit: refused before anything is held.
held=$(pinned_bytes)
rc=0
"$CTL" -s "$sock" pin "$T/m/huge" >"$T/out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a pin of 80 MB into a 64 MiB RAM tier exited $rc: $(cat "$T/out")"
grep -q "cachefsctl: pin: these files need 76.3M of the RAM tier, more than pins may hold: 57.6M (90% of it" "$T/out" ||
	fail "refusal message: $(cat "$T/out")"
grep -q "failed: 0 pages pinned" "$T/out" || fail "refused pin reported pages: $(cat "$T/out")"
[ "$(pinned_bytes)" = "$held" ] || fail "a refused pin changed the pinned bytes: $held before, $(pinned_bytes) after"
pass "a pin larger than the limit is refused: $(grep 'pin: these' "$T/out")"

# Fits alone, not with what is pinned already: rolled back, the old pins stay.
rc=0
# 57.2 MiB: under the 57.6 MiB limit alone, over it with the 14.3 MiB held.
"$CTL" -s "$sock" pin "$T/m/flood/f1" "$T/m/flood/f2" "$T/m/flood/f3" -j 4 >"$T/out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a pin past the limit exited $rc: $(cat "$T/out")"
grep -q "pin limit of a shard was reached" "$T/out" || fail "no rollback message: $(cat "$T/out")"
[ "$(pinned_bytes)" = "$held" ] || fail "after the rollback $(pinned_bytes) bytes are pinned, $held before"
pass "a pin that runs into the limit is rolled back; earlier pins stay ($held bytes)"

"$CTL" -s "$sock" unpin --all >"$T/out" 2>&1 || fail "unpin --all: $(cat "$T/out")"
grep -q "15 pages unpinned" "$T/out" || fail "unpin --all: $(cat "$T/out")"
[ "$(pinned_bytes)" = 0 ] || fail "after unpin --all $(pinned_bytes) bytes are pinned"
flood
before=$(source_bytes)
read_direct "$T/m/pinme/p1"
[ "$(source_bytes)" -gt "$before" ] || fail "an unpinned file survived the flood"
pass "unpin --all releases every hold; the flood then evicts them"
unmount_cachefs "$T/m"
wait

# ---- SSD tier: 64 MiB store, 8 MiB RAM; holds persist across a restart ----
# Two shards: 28 slots of pins each, so the 16 pages fit however the page
# hash (seeded by inode and mtime) splits their 7 stripes.
ssd="-o shards=2,ram_cache=8M,ssd_cache=$T/store:64M,ctl_socket=$sock"
mount_logged "$T/src" "$T/m" "$T/log2" $ssd
"$CTL" -s "$sock" pin "$T/m/pinme" >"$T/out" 2>&1 || fail "pin (SSD): $(cat "$T/out")"
grep -q "done: 16 pages pinned" "$T/out" || fail "pin (SSD): $(cat "$T/out")"
[ "$(pinned_bytes)" = $((16 << 20)) ] || fail "SSD pins count whole slots: $(pinned_bytes)"
rc=0
"$CTL" -s "$sock" pin "$T/m/ctrl" >"$T/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "pin limit of a shard was reached" "$T/out" ||
	grep -q "done: 5 pages pinned" "$T/out" || fail "pin of ctrl: $(cat "$T/out")"
"$CTL" -s "$sock" unpin "$T/m/ctrl" >/dev/null 2>&1 || fail "unpin ctrl"
unmount_cachefs "$T/m"
wait
"$FSCK" "$T/store" >"$T/fsck" || fail "store not clean after pins: $(cat "$T/fsck")"
grep -q ", 16 pinned pages$" "$T/fsck" || fail "cachefs-fsck does not count 16 pinned pages: $(cat "$T/fsck")"

mount_logged "$T/src" "$T/m" "$T/log3" $ssd
[ "$(pinned_bytes)" = $((16 << 20)) ] || fail "after a restart $(pinned_bytes) bytes are pinned, want 16 MiB"
pinned_survive "SSD tier"
unmount_cachefs "$T/m"
wait
pass "SSD tier: pins survive a restart and 320 MB of reads through a 64 MiB store"
