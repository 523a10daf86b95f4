#!/bin/bash
# Bad SSD store input gets a one-line refusal that says what to do, never a
# silent fallback: a file system without O_DIRECT, a store made with another
# page size or shard count, a store another daemon holds, a malformed
# option. cachefs-fsck --reset then lets the store be used again.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src" "$T/mnt" && head -c 3000000 /dev/urandom > "$T/src/f"

refused() {   # refused WANT-EXIT PATTERN cachefs-args...
	local want=$1 pat=$2 rc=0
	shift 2
	"$CACHEFS" "$T/src" "$T/mnt" "$@" 2>"$T/err" || rc=$?
	[ $rc = "$want" ] || fail "exit $rc (wanted $want) for $*: $(cat "$T/err")"
	grep -q "$pat" "$T/err" || fail "no '$pat' in: $(cat "$T/err")"
	[ "$(wc -l < "$T/err")" -le 2 ] || fail "more than a line or two: $(cat "$T/err")"
	! mountpoint -q "$T/mnt" || fail "mounted anyway"
	echo "  $(head -n1 "$T/err")"
}

refused 2 "expected /ABSOLUTE/PATH:SIZE" -o ssd_cache=relative/store:1G
refused 2 "invalid size" -o ssd_cache=$T/store:lots
refused 2 "always or second_touch" -o ssd_cache=$T/store:64M,ssd_admit=sometimes
refused 2 "not a regular file or block device" -o ssd_cache=$T:64M
refused 2 "give a size" -o ssd_cache=$T/nosize
refused 1 "too small" -o ssd_cache=$T/tiny:64K,shards=2
[ ! -e "$T/tiny" ] || fail "a refused store file was left behind"
pass "malformed ssd_cache options"

if [ "$(id -u)" = 0 ] && mkdir -p "$T/ram" && mount -t ramfs ramfs "$T/ram" 2>/dev/null; then
	MOUNTS+=("$T/ram")
	refused 2 "does not support O_DIRECT" -o ssd_cache=$T/ram/store:64M
	[ ! -e "$T/ram/store" ] || fail "a store file was left on ramfs"
	umount_retry "$T/ram"
	pass "no O_DIRECT (ramfs): refused"
fi
mkdir -p "$T/shm"
if [ "$(id -u)" = 0 ] && mount -t tmpfs tmpfs "$T/shm" 2>/dev/null; then
	MOUNTS+=("$T/shm")
	mount_logged "$T/src" "$T/mnt" "$T/log" -o ram_cache=8M,ssd_cache=$T/shm/store:64M
	cmp "$T/src/f" "$T/mnt/f" || fail "bytes differ"
	grep -q "is on tmpfs" "$T/log" || fail "no warning for a store on tmpfs: $(cat "$T/log")"
	unmount_cachefs "$T/mnt"
	umount_retry "$T/shm"
	pass "store on tmpfs works, with a warning"
fi

mount_logged "$T/src" "$T/mnt" "$T/log" -o ram_cache=8M,shards=2,ssd_cache=$T/store:64M
mkdir -p "$T/mnt2"
"$CACHEFS" "$T/src" "$T/mnt2" -o ram_cache=8M,shards=2,ssd_cache=$T/store:64M 2>"$T/err" && fail "second daemon on the same store mounted"
grep -q "in use by another cachefs daemon" "$T/err" || fail "unclear refusal: $(cat "$T/err")"
! mountpoint -q "$T/mnt2" || fail "second mount appeared"
pass "a second daemon on the same store is refused"
rc=0; "$FSCK" "$T/store" 2>"$T/err" || rc=$?
[ $rc = 2 ] && grep -q "in use" "$T/err" || fail "fsck on a live store: exit $rc, $(cat "$T/err")"
unmount_cachefs "$T/mnt"
wait

refused 2 "page_size=1M, this mount uses 64K.*cachefs-fsck --reset" -o ram_cache=8M,shards=2,page_size=64K,ssd_cache=$T/store:64M
refused 2 "made for 2 shards.*shards=2" -o ram_cache=8M,shards=1,ssd_cache=$T/store:64M
refused 2 "made with size 64M" -o ram_cache=8M,shards=2,ssd_cache=$T/store:128M
pass "another page size, shard count or size: refused with the way out"

"$FSCK" --reset "$T/store" | grep -q "reset" || fail "fsck --reset said nothing"
mount_logged "$T/src" "$T/mnt" "$T/log" -o ram_cache=8M,shards=1,page_size=64K,ssd_cache=$T/store:64M
cmp "$T/src/f" "$T/mnt/f" || fail "bytes differ after reset"
unmount_cachefs "$T/mnt"
grep -q "new store" "$T/log" || fail "reset store was not formatted anew: $(cat "$T/log")"
pass "cachefs-fsck --reset, then a mount with new settings formats it"
