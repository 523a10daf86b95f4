#!/bin/bash
# cachefsctl against a running daemon: status, load with progress (in the
# foreground, in the background, after its client died, of cached data,
# with a missing path), jobs, cancel, evict, stats --watch; the socket's
# permissions; SIGHUP reload; a second daemon on the same mount point or
# socket; no daemon at all; a stopped one.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src/tree/a/b" "$T/src/big"
for i in $(seq 20); do head -c $((i * 100000)) /dev/urandom >"$T/src/tree/a/f$i"; done
for i in $(seq 5); do head -c 3000000 /dev/urandom >"$T/src/tree/a/b/g$i"; done
for i in $(seq 8); do head -c 40000000 /dev/urandom >"$T/src/big/h$i"; done
tree_bytes=$(find "$T/src/tree" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }')
sock=$T/ctl.sock

mount_logged "$T/src" "$T/m" "$T/log" -o shards=2,ram_cache=1G,ctl_socket="$sock"
[ -S "$sock" ] || fail "no control socket at $sock"
[ "$(stat -c %a "$sock")" = 600 ] || fail "socket mode $(stat -c %a "$sock"), want 600"
"$CTL" -s "$sock" status >"$T/st" || fail "status failed"
grep -q "^mount  *$T/m <- " "$T/st" || fail "status lacks the mount: $(cat "$T/st")"
grep -q "^shards  *2;" "$T/st" || fail "status lacks the shards: $(cat "$T/st")"
# `-m MOUNTPOINT` finds the default socket only; this one was named.
"$CTL" -s "$sock" status --json | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["ok"] and s["shards"] == 2 and s["ram"]["capacity"] == 1 << 30, s
assert s["source_reads"]["bytes"] == 0, s' || fail "status --json"
pass "status, socket mode 0600"

# source_bytes: what the daemon has read from the source so far.
source_bytes() {
	"$CTL" -s "$sock" status --json | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["source_reads"]["bytes"])'
}

"$CTL" -s "$sock" load "$T/m/tree" >"$T/out" 2>&1 || fail "load: $(cat "$T/out")"
grep -q "done: 25/25 files, " "$T/out" || fail "load did not report 25 files done: $(cat "$T/out")"
[ "$(source_bytes)" = "$tree_bytes" ] || fail "load read $(source_bytes) bytes from the source, the tree has $tree_bytes"
pass "load of a tree: $(tail -n1 "$T/out")"

"$CTL" -s "$sock" load "$T/m/tree" >"$T/out" 2>&1 || fail "second load: $(cat "$T/out")"
[ "$(source_bytes)" = "$tree_bytes" ] || fail "loading cached data read the source"
same_tree "$T/src/tree" "$T/m/tree" >/dev/null
[ "$(source_bytes)" = "$tree_bytes" ] || fail "reading loaded files read the source again"
pass "a load of cached data, and reads after it, make no source reads"

rc=0
"$CTL" -s "$sock" load "$T/m/nothing-here" "$T/m/tree/a/f1" >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "load with a missing path exited $rc"
grep -q "cachefsctl: $T/m/nothing-here: No such file or directory" "$T/err" || fail "missing path not named: $(cat "$T/err")"
grep -q "done: 1/1 files" "$T/out" || fail "the rest was not loaded: $(cat "$T/out")"
pass "a missing path is named and the rest loaded: $(head -n1 "$T/err")"

# Background, then cancel: a slow load (one page at a time) of 320 MB. A
# machine fast enough to finish it before the cancel gets another try.
for attempt in $(seq 5); do
	job=$("$CTL" -s "$sock" load "$T/m/big" -j 1 --background)
	[[ $job =~ ^job\ [0-9]+$ ]] || fail "--background printed '$job'"
	id=${job#job }
	"$CTL" -s "$sock" cancel "$id" >"$T/cancel" || fail "cancel $id"
	rc=0
	"$CTL" -s "$sock" watch "$id" >"$T/out" 2>&1 || rc=$?
	grep -q "job $id done:" "$T/out" || break
	echo "  attempt $attempt: job $id was done before the cancel"
	"$CTL" -s "$sock" evict "$T/m/big" >/dev/null
done
[ "$rc" = 1 ] && grep -q "job $id cancelled:" "$T/out" || fail "watch of a cancelled job: rc $rc, $(cat "$T/out")"
grep -q "^job $id stops after the pages in flight" "$T/cancel" || fail "cancel said: $(cat "$T/cancel")"
"$CTL" -s "$sock" jobs >"$T/jobs"
grep -q "^$id  *load  *cancelled " "$T/jobs" || fail "jobs does not list $id as cancelled: $(cat "$T/jobs")"
pass "load --background and cancel: $(tail -n1 "$T/out")"

# A load goes on when its client dies. The client is killed once the daemon
# lists the job as running; on a fast machine the job may finish first, so
# the pages are evicted and it is tried again until the job outlives it.
newest_load() { "$CTL" -s "$sock" jobs | awk '$2 == "load" { print $1, $3; exit }'; }   # newest first
prev=$(newest_load)
for attempt in $(seq 10); do
	"$CTL" -s "$sock" load "$T/m/big" -j 1 >"$T/out" 2>&1 &
	client=$!
	for _ in $(seq 500); do
		job=$(newest_load)
		[ "$job" != "$prev" ] && [ "${job#* }" != listing ] && break
		sleep 0.01
	done
	kill -9 "$client" 2>/dev/null || true
	wait "$client" 2>/dev/null || true
	job=$(newest_load)
	[ "${job#* }" = running ] && break
	echo "  attempt $attempt: job $job had ended before its client was killed"
	"$CTL" -s "$sock" evict "$T/m/big" >/dev/null
	prev=$job
done
[ "${job#* }" = running ] || fail "no load was still running when its client was killed"
id=${job% *}
"$CTL" -s "$sock" watch "$id" >"$T/out" 2>&1 || fail "watch $id: $(cat "$T/out")"
grep -q "job $id done: 8/8 files, 305.2M/305.2M" "$T/out" || fail "the orphaned load did not finish: $(cat "$T/out")"
pass "a load survives its client's death: $(tail -n1 "$T/out")"

"$CTL" -s "$sock" evict "$T/m/big" >"$T/out" 2>&1 || fail "evict: $(cat "$T/out")"
grep -q "done: 8/8 files, 312 pages dropped" "$T/out" || fail "evict: $(cat "$T/out")"
before=$(source_bytes)
cat "$T/m/big/h1" >/dev/null
[ "$(source_bytes)" -ge $((before + 40000000)) ] || fail "an evicted file was not read from the source again"
pass "evict drops the pages: $(tail -n1 "$T/out")"

"$CTL" -s "$sock" stats --watch -n 2 >"$T/out" || fail "stats --watch"
[ "$(wc -l <"$T/out")" = 3 ] && head -n1 "$T/out" | grep -q "RAM/s" || fail "stats --watch: $(cat "$T/out")"
pass "stats --watch prints a line per second"

# A client that sends requests and never reads its replies is dropped once
# a send to it stalls (1 s); the control thread serves the others.
$PY3 - "$sock" <<'EOP' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.setblocking(False)
try:
    s.send(b'{"cmd":"status"}\n' * 20000)
except BlockingIOError:
    pass
time.sleep(8)
EOP
PIDS+=($!)
sleep 0.5
timeout 15 "$CTL" -s "$sock" -t 5 status >/dev/null 2>"$T/err" || fail "a client that does not read wedged the control thread: $(cat "$T/err")"
pass "a client that does not read is dropped, the others served"

# Names need not be UTF-8; JSON must be: such bytes come as \xNN.
odd=$T/m-$'\xe9'
mount_logged "$T/src" "$odd" "$T/log-odd" -o ctl_socket="$T/odd.sock"
"$CTL" -s "$T/odd.sock" status --json | $PY3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["mountpoint"].endswith("/m-\\xe9"), s["mountpoint"]' || fail "status of a mount point that is not UTF-8"
"$CTL" -s "$T/odd.sock" status | grep -q '^mount .*/m-\\xe9 <- ' || fail "status text of a mount point that is not UTF-8"
unmount_cachefs "$odd"
pass "a mount point that is not UTF-8 is shown with \\xNN"

# Refusals.
mkdir -p "$T/m2"
echo keep >"$T/not-a-socket"
if "$CACHEFS" "$T/src" "$T/m2" -o ctl_socket="$T/not-a-socket" 2>"$T/err"; then fail "a daemon replaced a file with its socket"; fi
grep -q "a file that is not a socket is there; refusing to replace it" "$T/err" || fail "not a socket: $(cat "$T/err")"
[ "$(cat "$T/not-a-socket")" = keep ] || fail "the file at ctl_socket was touched"
echo "  not a socket: $(cat "$T/err")"
rc=0
"$CTL" -s "$T/none.sock" status 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "no cachefs daemon answers on $T/none.sock" "$T/err" ||
	fail "no daemon: rc $rc, $(cat "$T/err")"
echo "  no daemon: $(cat "$T/err")"
# A stopped daemon still accepts into the socket's backlog: the wait ends.
# kill returns before every thread has stopped: one that has not can still
# answer, so wait for all of them (io_uring workers included) to show T.
all_stopped() {
	local st
	for st in /proc/"$1"/task/*/stat; do
		[ "$(sed 's/.*) \(.\).*/\1/' "$st" 2>/dev/null)" = T ] || return 1
	done
}
dpid=$(daemon_pid "$T/m")
kill -STOP "$dpid"
for _ in $(seq 200); do all_stopped "$dpid" && break; sleep 0.05; done
all_stopped "$dpid" || fail "SIGSTOP did not stop every thread of $dpid: $(cat /proc/"$dpid"/task/*/stat | cut -d' ' -f2,3)"
rc=0
timeout 20 "$CTL" -s "$sock" -t 1 status >/dev/null 2>"$T/err" || rc=$?
kill -CONT "$dpid"
[ "$rc" = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "did not answer within 1 s" "$T/err" ||
	fail "stopped daemon: rc $rc, $(cat "$T/err")"
echo "  stopped daemon: $(cat "$T/err")"
"$CTL" -s "$sock" status >/dev/null || fail "status after SIGCONT"
rc=0
"$CTL" -s "$sock" -t x status 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "^cachefsctl: -t takes seconds" "$T/err" || fail "-t x: rc $rc, $(cat "$T/err")"
if "$CACHEFS" "$T/src" "$T/m" -o ctl_socket="$T/other.sock" 2>"$T/err"; then fail "a second daemon mounted over the first"; fi
grep -q "is busy: something is mounted there" "$T/err" || fail "second daemon: $(cat "$T/err")"
[ "$(grep -c " $T/m " /proc/mounts)" = 1 ] || fail "a second daemon stacked a mount"
echo "  second daemon: $(cat "$T/err")"
mkdir -p "$T/m2"
if "$CACHEFS" "$T/src" "$T/m2" -o ctl_socket="$sock" 2>"$T/err"; then fail "a second daemon took the socket"; fi
grep -q "in use by another cachefs daemon" "$T/err" || fail "socket clash: $(cat "$T/err")"
! mountpoint -q "$T/m2" || fail "socket clash left a mount"
echo "  socket clash: $(cat "$T/err")"
pass "bad input refused in one line"
unmount_cachefs "$T/m"
[ ! -e "$sock" ] || fail "the socket was left behind at unmount"

# The default socket, ctl_group, and SIGHUP with a config file.
cat >"$T/conf" <<EOC
log_level = info
ctl_group = daemon
[mount /]
source = $T/src
EOC
mount_logged "$T/conf" "$T/m" "$T/log"
# Named as systemd-escape names the unit's instance.
dsock=/run/cachefs/$(systemd-escape --path "$T/m").sock
[ -S "$dsock" ] || fail "no default socket $dsock: $(ls /run/cachefs)"
[ "$(stat -c '%a %G' "$dsock")" = "660 daemon" ] || fail "ctl_group: $(stat -c '%a %G' "$dsock")"
(cd "$T/m/tree" && "$CTL" status) | grep -q "^mount  *$T/m <- $T/conf" || fail "status from inside the mount"
sed -i 's/^log_level = info/log_level = debug/' "$T/conf"
kill -HUP "$(daemon_pid "$T/m")"
for _ in $(seq 50); do grep -q "SIGHUP" "$T/log" && break; sleep 0.1; done
grep -q "SIGHUP: re-read $T/conf: log_level, attr_timeout, entry_timeout and negative_timeout applied; no other" "$T/log" ||
	fail "SIGHUP: $(cat "$T/log")"
mountpoint -q "$T/m" || fail "SIGHUP unmounted"
sed -i 's/^log_level = debug/log_level = info\nram_cache = 64M/' "$T/conf"
kill -HUP "$(daemon_pid "$T/m")"
for _ in $(seq 50); do [ "$(grep -c SIGHUP "$T/log")" = 2 ] && break; sleep 0.1; done
grep -q "other daemon-wide options changed too and were NOT applied" "$T/log" || fail "SIGHUP did not say what it left: $(cat "$T/log")"
pass "default socket with ctl_group, SIGHUP reload: $(grep -m1 -o 'SIGHUP.*' "$T/log")"
unmount_cachefs "$T/m"
