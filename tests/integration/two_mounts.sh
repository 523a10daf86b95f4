#!/bin/bash
# Two mounts at once (of different sources) serve their own bytes; unmount
# leaves no mount entry and no daemon behind. The second source is on tmpfs,
# which refuses O_DIRECT: the driver falls back to buffered reads.
. "$(dirname "$0")/../lib.sh"

$MKTREE "$T/a" --small 50
B=$T/b
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	B=$(mktemp -d /dev/shm/cachefs-test.XXXXXX)
	trap 'rc=$?; rm -rf "$B"; (exit $rc); cleanup' EXIT
fi
mkdir -p "$B" && head -c 5000000 /dev/urandom > "$B/only-in-b"
mount_cachefs "$T/a" "$T/ma" -o ram_cache=64M
mount_cachefs "$B" "$T/mb" -o ram_cache=64M,intake=threads
same_tree "$T/a" "$T/ma"
same_tree "$B" "$T/mb"
[ -e "$T/ma/only-in-b" ] && fail "mounts mixed up"
pass "two mounts serve their own trees"

pa=$(daemon_pid "$T/ma")
[ -n "$pa" ] || fail "no daemon for $T/ma"
unmount_cachefs "$T/ma"
grep -q " $T/ma " /proc/mounts && fail "mount entry left behind"
kill -0 "$pa" 2>/dev/null && fail "daemon $pa left behind"
same_tree "$B" "$T/mb"
pass "unmounting one leaves nothing behind and the other working"
unmount_cachefs "$T/mb"
