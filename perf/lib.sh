# Helpers shared by the benchmark scripts: medians, result rows and the
# Markdown table the README takes. Source it after setting `runs`.

median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
# med CMD...: the median of `runs` runs of CMD, each printing one number;
# a run that fails or prints nothing fails it (not left out of the median).
med() {
	local a=() r
	for _ in $(seq "$runs"); do
		r=$("$@") && [ -n "$r" ] || { echo "perf: $*: a run failed or gave no figure" >&2; return 1; }
		a+=("$r")
	done
	median "${a[@]}"
}
# medians CMD...: `runs` runs of CMD, each printing the same columns of
# numbers; prints each column's median, in order. A failed run fails it.
medians() {
	local out=() r i
	for _ in $(seq "$runs"); do
		r=$("$@") && [ -n "$r" ] || { echo "perf: $*: a run failed or gave no figure" >&2; return 1; }
		out+=("$r")
	done
	for ((i = 1; i <= $(wc -w <<<"${out[0]}"); i++)); do
		median $(printf '%s\n' "${out[@]}" | awk -v c=$i '{ print $c }')
	done | paste -sd' '
}
# s3_put_random BUCKET KEY BYTES: an object of random bytes, through the
# caller's s3tool; $work holds the file meanwhile.
s3_put_random() {
	head -c "$3" /dev/urandom > "$work/.put"
	s3tool put "$1" "$2" "$work/.put"
	rm -f "$work/.put"
}
# json EXPR: evaluates EXPR on the JSON object `d` read from stdin, rounded.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(round($1))"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# free_port: a TCP port free on 127.0.0.1 now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_mount MNT: until MNT is a mount point, for at most 10 s.
wait_mount() { for _ in $(seq 200); do mountpoint -q "$1" && return; sleep 0.05; done; }
# med_pair CMD...: CMD prints two numbers; the medians of each over `runs` runs.
med_pair() {
	local a=() b=() r
	for _ in $(seq "$runs"); do r=$("$@"); a+=("${r% *}"); b+=("${r#* }"); done
	echo "$(median "${a[@]}") $(median "${b[@]}")"
}
# cpu_seconds PID: user + system CPU time of a process so far (all its threads).
cpu_seconds() {
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}
# mount_pid MNT: the FUSE daemon serving MNT (the newest process naming it).
mount_pid() { pgrep -n -f -- " $1( |\$)"; }
# curl_par URL PARTS [CURL-ARGS...]: PARTS parallel ranged GETs of 1 GiB at URL;
# prints "MB/s CPU-seconds" (the curls' CPU).
curl_par() {
	python3 - "$@" <<'PY'
import resource, subprocess, sys, time
url, n, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
part = (1 << 30) // n
t0, r0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
ps = [subprocess.Popen(["curl", "-sf", *extra, "-o", "/dev/null", "-r", f"{i * part}-{(i + 1) * part - 1}", url])
      for i in range(n)]
assert all(p.wait() == 0 for p in ps), "a curl failed"
t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"{(1 << 30) / (t1 - t0) / 1e6:.0f} {cpu:.2f}")
PY
}

rows=()
# row NAME CACHEFS REFERENCE REFERENCE-IS: a measured pair and its ratio.
row() {
	local r
	r=$(python3 -c "print(f'{$2/$3:.2f}x')")
	rows+=("$1|$2|$3|$4|$r")
	printf '%-52s %10s %10s  %s  (%s)\n' "$1" "$2" "$3" "$r" "$4" >&2
}
# note NAME VALUE WHAT: a figure with no ratio (a target or an explanation).
note() {
	rows+=("$1|$2| |$3|")
	printf '%-52s %10s  (%s)\n' "$1" "$2" "$3" >&2
}
# table [NAME]: the rows as the README's Markdown table, and with NAME as
# $RESULTS/NAME.csv (default perf/results/) for perf/charts.sh.
table() {
	echo "| measurement | cachefs | reference | reference is | ratio |"
	echo "|---|---:|---:|---|---:|"
	for r in "${rows[@]}"; do
		IFS='|' read -r what a b refname rat <<< "$r"
		echo "| $what | $a | $b | $refname | $rat |"
	done
	[ -n "${1:-}" ] && rows_csv "${RESULTS:-$src/perf/results}/$1.csv"
	return 0
}
# rows_csv FILE: the rows as CSV, with the commit and the date in a comment.
rows_csv() {
	mkdir -p "$(dirname "$1")"
	python3 - "$1" "$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)" "${rows[@]}" <<'PY'
import csv, datetime, sys
with open(sys.argv[1], "w", newline="") as f:
    f.write(f"# {sys.argv[2]} {datetime.date.today()}\n")
    w = csv.writer(f)
    w.writerow(["measurement", "cachefs", "reference", "reference_is", "ratio"])
    for r in sys.argv[3:]:
        what, a, b, ref, rat = r.split("|")
        w.writerow([what, a, b.strip(), ref, rat.rstrip("x")])
PY
}

# s3rver_start BUCKET: s3rver on a free loopback port, data in $work/data,
# a passwd file in $work/passwd. Sets ep (its URL) and server (its pid);
# the caller's EXIT trap stops it. Needs src, work and PY3.
s3rver_start() {
	local js=$src/tests/s3/node_modules/s3rver/bin/s3rver.js port
	[ -f "$js" ] || { echo "$0: s3rver missing (tools/install-deps.sh)" >&2; exit 1; }
	mkdir -p "$work/data"
	port=$(free_port)
	ep=http://127.0.0.1:$port
	node --openssl-legacy-provider "$js" -a 127.0.0.1 -p "$port" -d "$work/data" -s \
		--configure-bucket "$1" >"$work/s3rver.log" 2>&1 &
	server=$!
	for _ in $(seq 100); do curl -s -o /dev/null "$ep/" && break; sleep 0.1; done
	printf 'S3RVER:S3RVER\n' >"$work/passwd"
	chmod 600 "$work/passwd"
}

# s3fs_mount_bucket BUCKET / rclone_mount_bucket BUCKET [MODE]: the peers
# mounted on $mnt over the s3rver at $ep, caches in $work emptied first
# (s3fs with use_cache, rclone with --vfs-cache-mode MODE, default full).
s3fs_mount_bucket() {
	rm -rf "$work/s3fs-cache"
	s3fs "$1" "$mnt" -o "url=$ep,use_path_request_style,passwd_file=$work/passwd,use_cache=$work/s3fs-cache"
	wait_mount "$mnt"
}
rclone_mount_bucket() {
	rm -rf "$work/rclone-cache"
	cat > "$work/rclone.conf" <<EOC
[s3r]
type = s3
provider = Other
endpoint = $ep
access_key_id = S3RVER
secret_access_key = S3RVER
force_path_style = true
EOC
	env -u AWS_CA_BUNDLE rclone --config "$work/rclone.conf" mount "s3r:$1" "$mnt" --vfs-cache-mode "${2:-full}" \
		--cache-dir "$work/rclone-cache" --daemon
	wait_mount "$mnt"
}
