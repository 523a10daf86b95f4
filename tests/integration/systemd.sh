#!/bin/bash
# The systemd side: the installed cachefs@.service passes systemd-analyze
# verify, and a daemon run as systemd runs it (NOTIFY_SOCKET, WATCHDOG_USEC)
# sends READY=1 once the mount answers, WATCHDOG=1 while every shard loop
# answers and none while one is stalled, then STOPPING=1 and exit 0 on SIGTERM.
. "$(dirname "$0")/../lib.sh"

command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed"

# ---- the unit, installed with the paths of a real install ----
inst=$T/inst
make -s -C "$top_builddir" install prefix="$inst" >"$T/install.log" 2>&1 ||
	fail "make install: $(tail -n5 "$T/install.log")"
unit=$inst/lib/systemd/system/cachefs@.service
[ -f "$unit" ] || fail "make install put no unit at $unit"
grep -q "^ExecStart=$inst/bin/cachefs $inst/etc/cachefs/%i.conf %f -f$" "$unit" ||
	fail "ExecStart does not run the installed daemon: $(grep ExecStart= "$unit")"
# verify wants an instance: the template under an instance's name.
cp "$unit" "$T/cachefs@mnt-data.service"
systemd-analyze verify "$T/cachefs@mnt-data.service" >"$T/verify" 2>&1 ||
	fail "systemd-analyze verify: $(cat "$T/verify")"
[ ! -s "$T/verify" ] || fail "systemd-analyze verify warns: $(cat "$T/verify")"
for k in Type=notify WatchdogSec= Restart=on-failure ExecStop= NoNewPrivileges=yes; do
	grep -q "^$k" "$unit" || fail "unit lacks $k"
done
pass "the installed unit passes systemd-analyze verify"

# ---- the notify protocol, with systemd's side played here ----
mkdir -p "$T/src" "$T/m"
head -c 3000000 /dev/urandom >"$T/src/f"
sock=$T/notify
/usr/bin/python3 - "$sock" "$T/notes" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
t0 = time.monotonic()
with open(sys.argv[2], "w", buffering=1) as out:
    while True:
        msg = s.recv(4096).decode()
        for line in msg.split("\n"):
            out.write("%.3f %s\n" % (time.monotonic() - t0, line))
        if "STOPPING=1" in msg:
            break
PY
listener=$!
PIDS+=("$listener")
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || fail "the notify listener did not start"

# Watchdog every 0.4 s (pings every 0.1 s); shard 1 stalls 2 s from 1.5 s on.
(
	export NOTIFY_SOCKET=$sock WATCHDOG_USEC=400000 WATCHDOG_PID=$BASHPID
	export CACHEFS_TEST_STALL_SHARD=1:1500:2000
	exec "$CACHEFS" "$T/src" "$T/m" -f -o shards=2 2>"$T/log"
) &
daemon=$!
MOUNTS+=("$T/m")
for _ in $(seq 200); do grep -q "READY=1" "$T/notes" && break; sleep 0.05; done
grep -q "READY=1" "$T/notes" || fail "no READY=1: $(cat "$T/notes") $(cat "$T/log")"
cmp "$T/src/f" "$T/m/f" || fail "the mount does not serve its source after READY=1"
grep -q "STATUS=2 shards, RAM" "$T/notes" || fail "no STATUS= summary: $(cat "$T/notes")"
pass "READY=1 once the mount answers, with $(grep -m1 -o 'STATUS=.*' "$T/notes")"

sleep 4.5
cat "$T/m/f" >/dev/null
kill -TERM "$daemon"
rc=0
timeout 10 tail --pid="$daemon" -f /dev/null || fail "daemon still running 10 s after SIGTERM"
wait "$daemon" || rc=$?
[ "$rc" = 0 ] || fail "daemon exited $rc on SIGTERM: $(cat "$T/log")"
! mountpoint -q "$T/m" || fail "SIGTERM left the mount"
wait "$listener" || fail "the listener got no STOPPING=1: $(tail -n5 "$T/notes")"
pass "SIGTERM: STOPPING=1, unmounted, exit 0"

# Pings before the stall, a gap as long as the stall, pings after it.
awk '/WATCHDOG=1/ { print $1 }' "$T/notes" >"$T/pings"
read -r before gap after < <(awk '
	NR > 1 && $1 - prev > gap { gap = $1 - prev; at = NR }
	{ t[NR] = $1; prev = $1 }
	END { printf "%d %.3f %d\n", at - 1, gap, NR - at + 1 }' "$T/pings")
echo "  $before pings, a gap of $gap s, $after pings"
[ "$before" -ge 5 ] || fail "only $before watchdog pings before the stall"
awk -v g="$gap" 'BEGIN { exit !(g >= 1.5) }' || fail "no gap in the pings while shard 1 stalled (longest $gap s)"
[ "$after" -ge 5 ] || fail "the pings did not resume after the stall ($after)"
grep -q "did not answer within" "$T/log" || fail "the stall was not logged: $(cat "$T/log")"
pass "WATCHDOG=1 stops while a shard loop stalls and resumes after"
