#!/bin/bash
# Three nodes share one cache: each mounts the same bucket with its own
# RAM tier, SSD store and page server. A file read through one node costs
# the source at most a GET per 4 MiB stripe and its bytes once, and the other nodes read it
# from the stripes' owners, byte-identical, at no source cost. With etcd:
# a node killed with -9 costs its peers no error and leaves the member
# list when its lease expires; restarted with its warm store it serves
# again; with etcd stopped the nodes serve on. A member's wrong bytes are
# never served; a hung member costs a read at most peer_timeout and a
# source fetch. A wrong token gets 401 and no bytes; a node cut another
# way (page_size) is refused.
. "$(dirname "$0")/../lib.sh"

s3_start data
for f in big big2 big3 big4; do head -c 48000000 /dev/urandom > "$T/$f"; done
STRIPES=12    # 48000000 bytes in 4 MiB stripes
for f in big big2 big3 big4; do $S3TOOL "$S3_EP" put data $f.bin "$T/$f"; done
: > "$T/empty"
$S3TOOL "$S3_EP" put data empty.bin "$T/empty"
. "$(dirname "$0")/../cluster_lib.sh"
# one_copy FILE A B C: FILE read through node A costs the source its bytes
# at most once, in at most a GET per stripe, then through B and C nothing
# more; the bytes are the same everywhere.
one_copy() {
	local f=$1 before after1 after2 bytes0 bytes
	before=$(all_gets) bytes0=$(all_source_bytes)
	cmp "$T/$f" "$T/m$2/$f.bin" || fail "node $2 read other bytes of $f"
	after1=$(all_gets) bytes=$(($(all_source_bytes) - bytes0))
	cmp "$T/$f" "$T/m$3/$f.bin" || fail "node $3 read other bytes of $f"
	cmp "$T/$f" "$T/m$4/$f.bin" || fail "node $4 read other bytes of $f"
	after2=$(all_gets)
	echo "  $f: $bytes bytes in $((after1 - before)) source GETs through node $2 ($STRIPES stripes; GETs by node now $(gets 0) $(gets 1) $(gets 2)), $((after2 - after1)) more through nodes $3 and $4"
	# At most one copy (big's first stripe came with the Range check above, so it costs a stripe less).
	[ "$bytes" -le "$(stat -c %s "$T/$f")" ] ||
		fail "$f: $bytes bytes from the source for a file of $(stat -c %s "$T/$f") (node $2 read" \
			"$(metric "$2" 'cachefs_peer_pages_total{from="fallback"}') pages itself after a peer failed)"
	# At most a GET per stripe: each owner fetches a stripe whole, in one GET, and the reader
	# merges contiguous stripes it owns into one (so often fewer).
	[ $((after1 - before)) -le $STRIPES ] || fail "$f cost $((after1 - before)) GETs for $STRIPES stripes"
	[ "$after2" = "$after1" ] || fail "nodes $3 and $4 read $f from the source ($((after2 - after1)) GETs)"
}

# ---- a fixed member list, and the token ----
for n in 0 1 2; do node $n -o "$MEMBERS"; done
code=$(curl -s -o "$T/body" -w '%{http_code}' "http://127.0.0.1:${P[0]}/v1/read?path=big.bin")
[ "$code" = 401 ] || fail "no token: HTTP $code"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $(rev "$T/token")" \
	"http://127.0.0.1:${P[0]}/v1/read?path=big.bin")
[ "$code" = 401 ] || fail "wrong token: HTTP $code"
[ "$(stat -c %s "$T/body")" -lt 200 ] || fail "a 401 carried $(stat -c %s "$T/body") bytes"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $(cat "$T/token")" \
	-H 'Range: bytes=1000-1999' "http://127.0.0.1:${P[0]}/v1/read?path=big.bin")
[ "$code" = 206 ] && cmp "$T/body" <(tail -c +1001 "$T/big" | head -c 1000) || fail "a ranged read: HTTP $code"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $(cat "$T/token")" \
	"http://127.0.0.1:${P[0]}/v1/read?path=empty.bin")
[ "$code" = 200 ] && [ ! -s "$T/body" ] || fail "an empty file: HTTP $code, $(stat -c %s "$T/body") bytes"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $(cat "$T/token")" \
	"http://127.0.0.1:${P[0]}/v1/read?path=../etc/passwd")
[ "$code" = 400 ] || fail "a path out of the mount: HTTP $code"
pass "a request without the token, or with a wrong one, gets 401 and no data; with it, the bytes (none of an empty file; 400 out of the mount)"

one_copy big 0 1 2
[ "$(metric 1 'cachefs_peer_pages_total{from="fallback"}')" = 0 ] || fail "node 1 fell back to the source"
must_refuse "a list without this node" "does not name this node" "s3://data" \
	-o "$S3_OPTS,serve=127.0.0.1:$(free_port),cluster_token_file=$T/token,members=127.0.0.1:${P[0]}"
pass "fixed members: one copy of the file from the source, the rest from the owners; a list must name the node"
for n in 0 1 2; do unmount_cachefs "$T/m$n"; done

# reader.py WANT PATH...: reads each PATH 1 MiB at a time (20 ms apart), checks its bytes
# against WANT, and prints the slowest read in seconds.
cat > "$T/reader.py" <<'PY'
import sys, time
want = open(sys.argv[1], "rb").read()
worst = 0
for path in sys.argv[2:]:
    got = bytearray()
    with open(path, "rb", buffering=0) as f:
        while True:
            t = time.monotonic()
            b = f.read(1 << 20)
            worst = max(worst, time.monotonic() - t)
            if not b:
                break
            got += b
            time.sleep(0.02)
    if bytes(got) != want:
        sys.exit(f"{path}: other bytes")
print(f"{worst:.3f}")
PY

# A member that answers wrong bytes (their digest does not match): each such page is read from the
# source, counted as corrupt, never served.
# 12 stripes: the impostor owns none of them once in 4096 files (rendezvous between two names).
head -c 48000000 /dev/urandom > "$T/liar"
$S3TOOL "$S3_EP" put data liar.bin "$T/liar"
LIAR=$(free_port)
$PY3 - "$LIAR" <<'PY' >>"$T/liar.log" 2>&1 &
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Liar(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        a, b = map(int, self.headers.get("Range", "bytes=0-0")[6:].split("-"))
        self.send_response(206)
        self.send_header("Content-Length", str(b - a + 1))
        self.send_header("X-Cachefs-Digest", "xxh3:0123456789abcdef")
        self.end_headers()
        self.wfile.write(os.urandom(b - a + 1))
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Liar).serve_forever()
PY
PIDS+=($!)
# Listening before node 0 asks it: a refused connection marks it down, and no answer is then a lie.
wait_http "the lying member" "$T/liar.log" -H "Range: bytes=0-0" "http://127.0.0.1:$LIAR/"
node 0 -o "members=127.0.0.1:${P[0]},127.0.0.1:$LIAR"
cmp "$T/liar" "$T/m0/liar.bin" || fail "node 0 served other bytes than the source's with a lying member"
corrupt=$(metric 0 'cachefs_peer_failures_total{cause="corrupt"}')
fallback=$(metric 0 'cachefs_peer_pages_total{from="fallback"}')
echo "  a lying member: $corrupt answers counted corrupt, $fallback pages read from the source instead"
[ "$corrupt" -gt 0 ] && [ "$fallback" -ge "$corrupt" ] || fail "corrupt $corrupt, fallback $fallback: $(tail -n 3 "$T/log0")"
logged "$T/log0" "do not match their digest"
pass "a member's wrong bytes are counted corrupt and read from the source, never served"
unmount_cachefs "$T/m0"

# A member that takes connections and never answers (a hung node: its kernel still completes the
# handshake): each page it owns waits peer_timeout, then comes from the source; no read waits longer
# than that plus a source fetch.
head -c 48000000 /dev/urandom > "$T/mute"
$S3TOOL "$S3_EP" put data mute.bin "$T/mute"
MUTE=$(free_port)
$PY3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024); print("listening", flush=True)
time.sleep(3600)' "$MUTE" >>"$T/mute.log" 2>&1 &
PIDS+=($!)
logged "$T/mute.log" listening
node 0 -o "members=127.0.0.1:${P[0]},127.0.0.1:$MUTE,peer_timeout=1"
worst=$($PY3 "$T/reader.py" "$T/mute" "$T/m0/mute.bin") || fail "reading with a hung member: $worst"
failed=$(metric 0 'cachefs_peer_failures_total{cause="failed"}')
echo "  a hung member: slowest 1 MiB read $worst s (peer_timeout=1), $failed pages timed out"
[ "$failed" -gt 0 ] || fail "no page was asked of the hung member"
# 1 s for the owner, then one fetch of a page from s3rver: 5 s is room for an ASan build on a busy
# machine, and far below the 30 s a read would wait on curl's own connection timeouts.
awk -v w="$worst" 'BEGIN { exit !(w < 6) }' || fail "a read waited $worst s on a hung member (peer_timeout=1)"
pass "a hung member costs a read at most peer_timeout and a source fetch, and the bytes are right"
unmount_cachefs "$T/m0"

# ---- etcd ----
etcd_start
ETCD_OPTS="etcd=http://127.0.0.1:$EP,cluster=t1,cluster_ttl=2"
for n in 0 1 2; do node $n -o "$ETCD_OPTS"; done
members_are 3 0 1 2
one_copy big2 1 0 2
pass "etcd: three nodes found each other; one copy from the source"

# A node cut another way is refused, in one line naming the difference.
must_refuse "another page size" "page_size=1024K, this node's is 256K" "s3://data" \
	-o "$S3_OPTS,page_size=256K,serve=127.0.0.1:$(free_port),cluster_token_file=$T/token,$ETCD_OPTS"
# Garbage under the prefix is left out, logged once.
key=$(printf 'cachefs/t1/members/garbage' | base64 -w0) val=$(printf 'not json' | base64 -w0)
curl -s -X POST -d "{\"key\":\"$key\",\"value\":\"$val\"}" "http://127.0.0.1:$EP/v3/kv/put" >/dev/null
sleep 2
[ "$(grep -c 'etcd key cachefs/t1/members/garbage left out' "$T/log0")" = 1 ] ||
	fail "garbage member record: $(grep garbage "$T/log0" || echo not logged)"
members_are 3 0 1 2
pass "a node with another page size is refused; a garbage member record is left out, logged once"

# kill -9 of node 0 while nodes 1 and 2 read: no error, no long wait.
cmp "$T/big4" "$T/m0/big4.bin" || fail "node 0 read other bytes of big4"   # for its restart, below
$PY3 "$T/reader.py" "$T/big3" "$T/m1/big3.bin" "$T/m2/big3.bin" >"$T/reads" 2>&1 &
reader=$!
sleep 0.3
kill -9 "$(daemon_pid "$T/m0")"
wait $reader || fail "reads during the kill: $(cat "$T/reads")"
echo "  slowest 1 MiB read while node 0 died: $(cat "$T/reads") s"
# A dead node refuses at once; peer_timeout (5 s here) and a fetch bound the read that was in flight.
awk -v w="$(cat "$T/reads")" 'BEGIN { exit !(w < 10) }' || fail "a read waited $(cat "$T/reads") s on the killed node"
members_are 2 1 2
pass "node 0 killed: reads on nodes 1 and 2 went on without error; its lease expired"

# Restarted with its warm store, node 0 rejoins and serves its stripes again.
fusermount3 -u "$T/m0" 2>/dev/null || umount -l "$T/m0" 2>/dev/null || true
node 0 -o "$ETCD_OPTS"
members_are 3 0 1 2
before=$(all_gets)
cmp "$T/big4" "$T/m2/big4.bin" || fail "node 2 read other bytes of big4 after the restart"
echo "  big4 through node 2: node 0 served $(metric 0 cachefs_peer_requests_served_total) requests from its store, $(($(all_gets) - before)) source GETs"
[ "$(metric 0 cachefs_peer_requests_served_total)" -gt 0 ] || fail "node 0 served nothing after rejoining: $(tail -n 5 "$T/log0" "$T/log2")"
[ "$(all_gets)" = "$before" ] || fail "big4 was read from the source again after node 0 rejoined"
pass "node 0 restarted with its warm store rejoins and serves what it had"

# etcd stopped: the nodes keep their member list and serve.
kill "$ETCD_PID"
wait "$ETCD_PID" 2>/dev/null || true
logged "$T/log1" "etcd does not answer"
cmp "$T/big2" "$T/m2/big2.bin" || fail "node 2 read other bytes with etcd stopped"
members_are 3 0 1 2
# Asking etcd again costs next to nothing meanwhile (a retry every 0.5 s, not a spin).
pid=$(daemon_pid "$T/m1")
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
c0=$(cpu); sleep 2; c1=$(cpu)
[ $((c1 - c0)) -lt 50 ] || fail "node 1 used $((c1 - c0)) CPU ticks in 2 s idle with etcd stopped"
pass "etcd stopped: the nodes keep the last member list and serve, idle"
for n in 0 1 2; do unmount_cachefs "$T/m$n"; done
