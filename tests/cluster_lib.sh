# Helpers for the cluster tests: three nodes on loopback, each with its
# own RAM tier, SSD store, page server and metrics port, sharing one
# s3rver bucket (s3_start first) and a token. Source after lib.sh.
openssl rand -hex 32 > "$T/token"
chmod 600 "$T/token"
TOKEN=$(cat "$T/token")
P=() M=()
for n in 0 1 2; do P[$n]=$(free_port); M[$n]=$(free_port); done
MEMBERS="members=127.0.0.1:${P[0]},127.0.0.1:${P[1]},127.0.0.1:${P[2]}"

# node N [options]: mounts node N on $T/mN with its log in $T/logN. The tests count source
# GETs, so a peer gets 5 s to answer, not 0.3: an ASan node on a loaded CI machine can take
# longer, and the asker then reads the page itself (right, but a second copy).
node() {
	local n=$1
	shift
	mount_logged "s3://data" "$T/m$n" "$T/log$n" -o "$S3_OPTS,ram_cache=256M,serve=127.0.0.1:${P[$n]}" \
		-o "cluster_token_file=$T/token,metrics=127.0.0.1:${M[$n]},ssd_cache=$T/store$n:256M,peer_timeout=5" "$@"
}
metric() {   # metric N NAME{LABELS}: node N's counter
	curl -s "http://127.0.0.1:${M[$1]}/metrics" | awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'
}
gets() { metric "$1" 'cachefs_source_requests_total{kind="get"}'; }
all_gets() { echo $(($(gets 0) + $(gets 1) + $(gets 2))); }
# all_source_bytes: bytes the three nodes read from the source (not from each other).
all_source_bytes() {
	local s=0 n
	for n in 0 1 2; do s=$((s + $(metric $n 'cachefs_served_bytes_total{tier="source"}'))); done
	echo "$s"
}
# api N [curl args] PATH?QUERY: node N's page server with the token; the body on stdout.
api() {
	local n=$1
	shift
	curl -sS -H "Authorization: Bearer $TOKEN" "${@:1:$#-1}" "http://127.0.0.1:${P[$n]}/v1/${*: -1}"
}

# etcd_start: etcd-server on free ports (EP: its client port), or skip.
etcd_start() {
	command -v etcd >/dev/null || skip "etcd is not installed (Debian etcd-server; tools/install-deps.sh)"
	EP=$(free_port) EPP=$(free_port)
	etcd --name t --data-dir "$T/etcd" --listen-client-urls "http://127.0.0.1:$EP" \
		--advertise-client-urls "http://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$EPP" \
		--initial-advertise-peer-urls "http://127.0.0.1:$EPP" --initial-cluster "t=http://127.0.0.1:$EPP" \
		>>"$T/etcd.log" 2>&1 &
	ETCD_PID=$!
	PIDS+=("$ETCD_PID")
	wait_http etcd "$T/etcd.log" -X POST -d '{}' "http://127.0.0.1:$EP/v3/maintenance/status"
}
members_are() {   # members_are N NODES...: each node's member count reaches N within 15 s
	local want=$1 n
	shift
	for n in "$@"; do
		for _ in $(seq 150); do [ "$(metric "$n" cachefs_cluster_members)" = "$want" ] && break; sleep 0.1; done
		[ "$(metric "$n" cachefs_cluster_members)" = "$want" ] ||
			fail "node $n sees $(metric "$n" cachefs_cluster_members) members, not $want"
	done
}
