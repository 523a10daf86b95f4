#!/bin/bash
# The control socket cannot be hijacked: a daemon refuses a runtime
# directory another user owns or may write, and makes its own 0700;
# cachefsctl talks only to root, itself or the mount's owner
# (SO_PEERCRED), and says "permission denied" when that is what happened.
. "$(dirname "$0")/../lib.sh"

command -v setpriv >/dev/null || skip "setpriv (util-linux) not installed"
id daemon >/dev/null 2>&1 && id nobody >/dev/null 2>&1 || skip "users daemon and nobody are needed"
uid=$(id -u daemon)
rdir=/tmp/cachefs-$uid
[ -e "$rdir" ] && skip "$rdir exists already; this test needs to own it"
cleanup_rdir() { rm -rf "$rdir"; }
trap 'cleanup_rdir; cleanup' EXIT
as_daemon() { setpriv --reuid="$uid" --regid="$(id -g daemon)" --clear-groups env -u XDG_RUNTIME_DIR "$@"; }

chmod 711 "$T"
mkdir -p "$T/sec/src" "$T/sec/m"
echo data >"$T/sec/src/f"
chown -R daemon "$T/sec"

# Another user made the directory first, and it is open to all.
mkdir -m 0777 "$rdir"
chown nobody "$rdir"
if as_daemon "$CACHEFS" "$T/sec/src" "$T/sec/m" -f 2>"$T/err"; then fail "started in another user's runtime directory"; fi
grep -q "control socket directory $rdir belongs to uid $(id -u nobody)" "$T/err" || fail "foreign directory: $(cat "$T/err")"
echo "  $(cat "$T/err")"
chown daemon "$rdir"
if as_daemon "$CACHEFS" "$T/sec/src" "$T/sec/m" -f 2>"$T/err"; then fail "started in a directory others may write"; fi
grep -q "is writable by others (mode 0777)" "$T/err" || fail "open directory: $(cat "$T/err")"
echo "  $(cat "$T/err")"
rm -rf "$rdir"
# Our own, made 0700 (the mount itself may fail here: /dev/fuse may be root's only).
as_daemon "$CACHEFS" "$T/sec/src" "$T/sec/m" -f 2>"$T/err" &
dpid=$!
for _ in $(seq 100); do [ -d "$rdir" ] && break; sleep 0.05; done
[ "$(stat -c '%U %a' "$rdir")" = "daemon 700" ] || fail "runtime directory: $(stat -c '%U %a' "$rdir")"
fusermount3 -u "$T/sec/m" 2>/dev/null || true
kill "$dpid" 2>/dev/null || true
wait "$dpid" 2>/dev/null || true
pass "a runtime directory not ours, or open to others, is refused; ours is 0700"

# cachefsctl run by another user against root's mount.
mkdir -p "$T/src"
echo data >"$T/src/f"
mount_logged "$T/src" "$T/m" "$T/log" -o shards=1
if setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups "$CTL" -m "$T/m" status 2>"$T/err"; then
	fail "another user got the status of root's daemon"
fi
grep -q "permission denied on the control socket" "$T/err" || fail "another user: $(cat "$T/err")"
echo "  $(cat "$T/err")"
"$CTL" -m "$T/m" status >/dev/null || fail "root's own status"
unmount_cachefs "$T/m"
pass "another user is told permission denied"

# A process of another user on the socket path: cachefsctl sends it nothing.
mkdir -p "$T/fake"
chown nobody "$T/fake"
setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups $PY3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept()
data = c.recv(4096)
open(sys.argv[2], "wb").write(data)
try:
    c.sendall(b"{\"ok\": true, \"version\": \"fake\"}\n")
except OSError:
    pass
' "$T/fake/sock" "$T/fake/got" &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$T/fake/sock" ] && break; sleep 0.05; done
if "$CTL" -s "$T/fake/sock" evict "$T/whatever" 2>"$T/err"; then fail "cachefsctl talked to another user's process"; fi
grep -q "runs as uid $(id -u nobody), neither root, you, nor the mount's owner" "$T/err" || fail "peer check: $(cat "$T/err")"
sleep 0.2
[ ! -s "$T/fake/got" ] || fail "cachefsctl sent the impostor: $(cat "$T/fake/got")"
echo "  $(cat "$T/err")"
pass "cachefsctl checks who answers before it sends anything"
