#!/bin/bash
# Operating a cluster of three nodes (a fixed member list): `cachefsctl
# load` on one node splits the work by owner, shows every node's part and
# leaves one copy in the cluster (the other nodes then read it at no
# source cost, byte-identical); `cachefsctl cluster` lists the members with
# their tiers and peer traffic; the page server's loads (submit, progress,
# cancel), a page by its key, 405 with Allow; served bytes by tier count
# "peer"; stat and list answered from the namespace while the source is down.
. "$(dirname "$0")/../lib.sh"

s3_start data
mkdir -p "$T/src/tree/sub"
for i in 1 2 3 4; do head -c 20000000 /dev/urandom > "$T/src/tree/big$i"; done
for i in $(seq 30); do head -c $((i * 1000 + 7)) /dev/urandom > "$T/src/tree/sub/small$i"; done
for f in $(cd "$T/src" && find tree -type f); do $S3TOOL "$S3_EP" put data "$f" "$T/src/$f"; done
TOTAL=$(find "$T/src/tree" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }')
. "$(dirname "$0")/../cluster_lib.sh"
for n in 0 1 2; do node $n -o "$MEMBERS"; done

# ---- cachefsctl cluster ----
"$CTL" -m "$T/m1" cluster > "$T/members" || fail "cachefsctl cluster: $(cat "$T/members")"
cat "$T/members" | sed 's/^/  /'
[ "$(grep -c '^127.0.0.1:' "$T/members")" = 3 ] || fail "cachefsctl cluster did not list 3 members"
grep -q "^127.0.0.1:${P[1]} \*" "$T/members" || fail "cachefsctl cluster did not mark this node"
"$CTL" -m "$T/m1" cluster --json | $PY3 -c '
import json, sys
r = json.load(sys.stdin)
assert len(r["members"]) == 3, r
for m in r["members"]:
    assert m["status"]["ram"]["capacity"] == 256 << 20, m
    assert m["status"]["ssd"]["capacity"] > 0, m
    assert "bytes_served" in m["peer"], m
' || fail "cachefsctl cluster --json"
pass "cachefsctl cluster lists the three members with their tiers"

# ---- a load split by owner ----
before=$(all_gets) bytes0=$(all_source_bytes)
"$CTL" -m "$T/m1" load "$T/m1/tree" > "$T/load.out" 2>&1 || fail "cachefsctl load: $(cat "$T/load.out")"
cat "$T/load.out" | tail -n 5 | sed 's/^/  /'
grep -q "done: 34/34 files.* on 3 nodes" "$T/load.out" || fail "no cluster-wide progress: $(cat "$T/load.out")"
[ "$(grep -c '^  127.0.0.1:.* done ' "$T/load.out")" = 3 ] || fail "not every node's part: $(cat "$T/load.out")"
loaded=$(($(all_gets) - before)) bytes=$(($(all_source_bytes) - bytes0))
ram1=$(metric 1 'cachefs_cache_bytes{tier="ram"}')
echo "  the load read $bytes bytes in $loaded source GETs (20 stripes + 30 small files); node 1 holds $ram1 of $TOTAL bytes"
[ "$bytes" = "$TOTAL" ] || fail "the load read $bytes bytes from the source for $TOTAL"
[ "$loaded" -le 50 ] || fail "the load cost $loaded source GETs for 20 stripes and 30 files"
[ "$ram1" -lt $((TOTAL * 3 / 4)) ] || fail "node 1 loaded $ram1 of $TOTAL bytes itself: not split"
before=$(all_gets)
for n in 0 1 2; do
	diff -r "$T/src/tree" "$T/m$n/tree" || fail "node $n read other bytes after the load"
done
[ "$(all_gets)" = "$before" ] || fail "after the load, reading cost $(($(all_gets) - before)) source GETs"
peer=$(metric 0 'cachefs_served_bytes_total{tier="peer"}')
[ "$peer" -gt 0 ] || fail "node 0 counted no bytes from peers"
pass "cachefsctl load on node 1 loaded each stripe on its owner: all three nodes then read every byte at no source cost ($peer bytes from peers on node 0)"

# ---- the page server's loads ----
code=$(api 2 -o "$T/body" -w '%{http_code}' -X POST "load?path=../x")
[ "$code" = 400 ] || fail "a load out of the mount: HTTP $code"
code=$(api 2 -o "$T/body" -w '%{http_code}' "load/cancel?job=1")
[ "$code" = 405 ] || fail "GET of load/cancel: HTTP $code"
api 2 -o /dev/null -D "$T/hdr" "load/cancel?job=1" || true
grep -qi '^Allow: POST' "$T/hdr" || fail "a 405 without Allow: $(cat "$T/hdr")"
job=$(api 2 -X POST "load?path=tree/sub&path=tree/big1&scope=cluster" | $PY3 -c 'import json, sys; print(json.load(sys.stdin)["job"])')
# The job's own state: its nodes' parts carry theirs in the same object, and one of them ends first.
job_state() { $PY3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["state"])' "$1"; }
for _ in $(seq 100); do
	api 2 "load?job=$job" > "$T/job"
	[ "$(job_state "$T/job")" = done ] && break
	sleep 0.1
done
$PY3 - "$T/job" "$((20000000 + $(cat "$T"/src/tree/sub/* | wc -c)))" <<'PY' || fail "load over HTTP: $(cat "$T/job")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["state"] == "done" and j["files_total"] == 31 and j["files_done"] == 31, j
assert j["bytes_total"] == int(sys.argv[2]) == j["bytes_done"], (j["bytes_total"], sys.argv[2])
assert len(j["nodes"]) == 3 and sum(n["bytes_total"] for n in j["nodes"]) == j["bytes_total"], j
PY
job=$(api 0 -X POST "load?path=tree&parallel=1" | $PY3 -c 'import json, sys; print(json.load(sys.stdin)["job"])')
api 0 -X POST "load/cancel?job=$job" > "$T/job"
grep -q "\"job\":$job" "$T/job" || fail "cancel: $(cat "$T/job")"
for _ in $(seq 100); do
	state=$(api 0 "load?job=$job" | $PY3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')
	[ "$state" = cancelled ] || [ "$state" = done ] && break
	sleep 0.1
done
[ "$state" = cancelled ] || [ "$state" = done ] || fail "a cancelled load is still $state"
code=$(api 0 -o "$T/body" -w '%{http_code}' "load?job=999999")
[ "$code" = 404 ] || fail "an unknown job: HTTP $code"
pass "the page server starts a load, reports every node's part, cancels one (it ended $state), and refuses bad requests"

# ---- a page by its key ----
id=$(api 0 -D - -o /dev/null -H 'Range: bytes=0-0' "read?path=tree/big2" | tr -d '\r' |
	awk -F': ' 'tolower($1) == "x-cachefs-id" { print $2 }')
[ -n "$id" ] || fail "no X-Cachefs-Id on a read"
code=$(api 0 -o "$T/page" -w '%{http_code}' "page?file=$id&index=1")
[ "$code" = 200 ] || fail "page 1 of big2 by its key: HTTP $code: $(head -c 200 "$T/page")"
cmp "$T/page" <(tail -c +$((1048576 + 1)) "$T/src/tree/big2" | head -c 1048576) || fail "page 1 of big2: other bytes"
errors=$(metric 0 cachefs_source_read_errors_total)
code=$(api 0 -o "$T/body" -w '%{http_code}' "page?file=$id&index=9999")
[ "$code" = 404 ] || fail "a page nobody cached: HTTP $code"
# A lookup by key is no fetch: a miss is neither a source read error nor a page taken from the RAM tier.
[ "$(metric 0 cachefs_source_read_errors_total)" = "$errors" ] || fail "a page by key that missed counted as a read error"
pass "a cached page by its key; 404 for one not cached"

# ---- stat and list come from the namespace, and outlive the source ----
api 0 "list?path=tree/sub" > "$T/list1" || fail "list of tree/sub"
api 0 "list?path=tree" > /dev/null || fail "list of tree"
names() { $PY3 -c 'import json, sys; print(" ".join(sorted(e["name"] for e in json.load(open(sys.argv[1]))["entries"])))' "$1"; }
[ "$(names "$T/list1" | wc -w)" = 30 ] || fail "list of tree/sub: $(head -c 300 "$T/list1")"
s3_stop
code=$(api 0 -o "$T/list2" -w '%{http_code}' "list?path=tree/sub")
[ "$code" = 200 ] && [ "$(names "$T/list2")" = "$(names "$T/list1")" ] ||
	fail "a listing while the source is down: HTTP $code: $(head -c 300 "$T/list2")"
code=$(api 0 -o "$T/stat" -w '%{http_code}' "stat?path=tree/sub/small3")
[ "$code" = 200 ] && $PY3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["size"] == 3007 and d["etag"], d' "$T/stat" ||
	fail "a stat while the source is down: HTTP $code: $(head -c 300 "$T/stat")"
# A listed directory knows what it does not hold, source or no source.
code=$(api 0 -o "$T/stat" -w '%{http_code}' "stat?path=tree/nothing")
[ "$code" = 404 ] || fail "a name not in a listed directory while the source is down: HTTP $code"
pass "stat and list answer from the namespace, also while the source is down"
for n in 0 1 2; do unmount_cachefs "$T/m$n"; done
