#!/bin/bash
# After kill -9 of the daemon, the mount answers "Transport endpoint is not
# connected"; the next cachefs on that mount point removes it and mounts.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src" && head -c 3000000 /dev/urandom > "$T/src/f"
mount_cachefs "$T/src" "$T/mnt" -o ram_cache=64M
cmp "$T/src/f" "$T/mnt/f" || fail "first mount reads wrong bytes"
pid=$(daemon_pid "$T/mnt")
kill -9 "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
wait_dead "$T/mnt"
if ls "$T/mnt" 2>"$T/err"; then fail "dead mount still answers"; fi
grep -q "not connected" "$T/err" || fail "unexpected error on dead mount: $(cat "$T/err")"
pass "killed daemon leaves a dead mount"

"$CACHEFS" "$T/src" "$T/mnt" -o ram_cache=64M 2>"$T/err2" || fail "remount failed: $(cat "$T/err2")"
grep -q "removed the dead mount" "$T/err2" || fail "no word of the cleanup: $(cat "$T/err2")"
cmp "$T/src/f" "$T/mnt/f" || fail "remount reads wrong bytes"
[ "$(grep -c " $T/mnt " /proc/mounts)" = 1 ] || fail "stacked mounts at $T/mnt"
pass "remount over the dead mount works"
unmount_cachefs "$T/mnt"
