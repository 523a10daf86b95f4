# Shared helpers for the integration tests. Source it first thing.
# Exit codes: 0 pass, 77 skip, 99 hard error; any other non-zero fails.
set -eEu -o pipefail
# set -e ends a test at an unguarded failing command: say which one.
on_err() {
	local rc=$?
	echo "FAIL: ${BASH_SOURCE[1]}:${BASH_LINENO[0]}: '$BASH_COMMAND' exited $rc" >&2
}
trap on_err ERR

: "${top_builddir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_srcdir:=$top_builddir}"
CACHEFS=$top_builddir/cachefs
CTL=$top_builddir/cachefsctl
BENCH=$top_builddir/cachefs-bench
PRCMP=$top_builddir/tests/prcmp
MKTREE="python3 $top_srcdir/tests/mktree.py"

T=$(mktemp -d "${TMPDIR:-/tmp}/cachefs-test.XXXXXX")
MOUNTS=()
PIDS=()

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok - $*"; }

cleanup() {
	local rc=$?
	for m in "${MOUNTS[@]}"; do
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

[ -c /dev/fuse ] || skip "no /dev/fuse"
command -v fusermount3 >/dev/null || skip "fusermount3 not installed"

# daemon_pid MNT: the pid of the cachefs serving MNT.
daemon_pid() {
	pgrep -f -x "$CACHEFS .* $1( .*)?" | head -n1
}

# wait_dead MNT: after its daemon was killed, waits until MNT answers ENOTCONN.
# The kernel aborts the connection only once the dead daemon's io_uring reads
# of /dev/fuse are cancelled, which it does asynchronously; until then the
# mount can still look alive (cached attributes) or hang.
wait_dead() {
	for _ in $(seq 100); do
		! timeout 1 stat -f "$1" >/dev/null 2>"$T/wait_dead.err" &&
			grep -q "not connected" "$T/wait_dead.err" && return 0
		sleep 0.05
	done
	fail "the mount at $1 still answers after its daemon died"
}

# logged LOG PATTERN: waits (up to 3 minutes) until LOG has a line matching PATTERN.
logged() {
	for _ in $(seq 1800); do grep -q "$2" "$1" && return 0; sleep 0.1; done
	fail "not logged: $2: $(cat "$1")"
}

# wait_file FILE: waits (up to 20 s) until FILE exists (a background writer's flag).
wait_file() {
	for _ in $(seq 200); do [ -e "$1" ] && return 0; sleep 0.1; done
	fail "$1 never appeared"
}

# kill_daemon MNT: kill -9 of the daemon serving MNT; its dead mount is cleared.
kill_daemon() {
	kill -9 "$(daemon_pid "$1")"
	wait_dead "$1"
	fusermount3 -u -z "$1"
}

# sanitized: the cachefs under test is an ASan/UBSan build, slower and with
# allocator pauses of its own (timing limits widen for it).
# No pipe into grep -q: the loader prints a line per write, and under pipefail
# the SIGPIPE after grep's early exit made this false at random (CI, ASan).
sanitized() {
	case $(ldd "$CACHEFS" 2>/dev/null) in *libasan* | *libubsan*) return 0 ;; esac
	return 1
}

# answers MNT: a live file system is mounted there. A dead FUSE mount (its
# daemon killed) still looks mounted to mountpoint; statfs says ENOTCONN.
answers() {
	mountpoint -q "$1" && timeout 5 stat -f "$1" >/dev/null 2>&1
}

# mount_cachefs SRC MNT [cachefs args...]: mounts and waits until it answers.
mount_cachefs() {
	local src=$1 mnt=$2
	shift 2
	mkdir -p "$mnt"
	"$CACHEFS" "$src" "$mnt" "$@"
	MOUNTS+=("$mnt")
	for _ in $(seq 100); do
		answers "$mnt" && return 0
		sleep 0.05
	done
	fail "mount of $src at $mnt did not appear"
}

# unmount_cachefs MNT: unmounts and waits for the daemon to exit.
unmount_cachefs() {
	local mnt=$1 pid
	pid=$(daemon_pid "$mnt" || true)
	fusermount3 -u "$mnt"
	for _ in $(seq 200); do
		[ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null && break
		sleep 0.05
	done
	[ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null || fail "daemon $pid still running after unmount"
}

# same_tree A B: every regular file under A is byte-identical under B, and
# B holds no file A lacks.
same_tree() {
	local a=$1 b=$2 n=0
	diff <(cd "$a" && find . -mindepth 1 | LC_ALL=C sort) <(cd "$b" && find . -mindepth 1 | LC_ALL=C sort) ||
		fail "file lists of $a and $b differ"
	while IFS= read -r -d '' f; do
		cmp -s "$a/$f" "$b/$f" || fail "$f differs between $a and $b"
		n=$((n + 1))
	done < <(cd "$a" && find . -type f -print0)
	echo "$n files identical"
}

FSCK=$top_builddir/cachefs-fsck

# mount_logged SRC MNT LOG [cachefs args...]: a foreground daemon in the
# background with its log in LOG (counters appear there at unmount).
mount_logged() {
	local src=$1 mnt=$2 log=$3
	shift 3
	mkdir -p "$mnt" 2>/dev/null || true   # a dead mount is cachefs's to clean
	"$CACHEFS" "$src" "$mnt" -f "$@" 2>"$log" &
	MOUNTS+=("$mnt")
	for _ in $(seq 200); do
		answers "$mnt" && return 0
		kill -0 $! 2>/dev/null || break
		sleep 0.05
	done
	fail "mount of $src at $mnt did not appear: $(cat "$log")"
}

# counter LOG 'REGEX-BEFORE' : the number that precedes REGEX in the last
# counters line of LOG, e.g. counter "$T/log" 'bytes read from the source'.
counter() {
	local v
	v=$(grep -o "[0-9]* $2" "$1" | tail -n1 | cut -d' ' -f1)
	[ -n "$v" ] || fail "no '$2' counter in $1: $(cat "$1")"
	echo "$v"
}

# store_pages STORE: pages a store holds, read while its daemon runs.
store_pages() {
	"$FSCK" --live --quick "$1" | sed -n 's/.*: \([0-9]*\) pages, .*/\1/p'
}

# pages_of DIR PAGE_SIZE: the cache pages the regular files under DIR take.
pages_of() {
	find "$1" -type f -printf '%s\n' | awk -v ps="$2" '{ n += int(($1 + ps - 1) / ps) } END { print n + 0 }'
}

# umount_retry DIR: unmounts a helper file system, waiting out a moment of
# "target is busy" while the kernel finishes closing a dead daemon's files.
umount_retry() {
	for _ in $(seq 50); do umount "$1" 2>/dev/null && return 0; sleep 0.1; done
	umount "$1"
}

# must_refuse WHAT EXPECTED-TEXT cachefs-args...: mounting on $T/m fails,
# saying EXPECTED-TEXT, and leaves no mount.
must_refuse() {
	local what=$1 want=$2
	shift 2
	mkdir -p "$T/m"
	if timeout 60 "$CACHEFS" "$@" "$T/m" -f 2>"$T/err"; then fail "$what: mounted"; fi
	grep -q -- "$want" "$T/err" || fail "$what: expected '$want', got: $(cat "$T/err")"
	! mountpoint -q "$T/m" || fail "$what: left a mount"
	echo "  $what: $(head -n1 "$T/err")"
}

# ---- the local S3 server (s3rver from npm; see ../shared/TESTING.md) ----
# botocore is Debian's python3-botocore, for /usr/bin/python3 whatever
# python3 comes first in PATH.
PY3=/usr/bin/python3
S3TOOL="$PY3 $top_srcdir/tests/s3tool.py"

free_port() {
	$PY3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http WHAT LOG CURL_ARGS...: waits up to 20 s for a server we started to
# answer (a slow start under ASan is not a failure), else fails with LOG's end.
wait_http() {
	local what=$1 log=$2
	shift 2
	for _ in $(seq 200); do
		curl -s -o /dev/null "$@" && return 0
		sleep 0.1
	done
	fail "$what did not start: $(tail -n 5 "$log")"
}

# s3_start BUCKET: s3rver on a free loopback port with its own data folder.
# Sets S3_EP (endpoint URL), S3_PID, S3_DATA and S3_OPTS (cachefs options
# that reach it with a passwd_file, staging writes in $T/staging). s3_start
# again after s3_stop restarts it on the same port and data.
s3_start() {
	local js="" d
	for d in "$top_srcdir/tests/s3" "${CACHEFS_TEST_SERVERS:-}"; do
		[ -n "$d" ] && [ -f "$d/node_modules/s3rver/bin/s3rver.js" ] && js=$d/node_modules/s3rver/bin/s3rver.js && break
	done
	[ -n "$js" ] || skip "s3rver is not installed (tools/install-deps.sh runs npm ci in tests/s3)"
	$PY3 -c 'import botocore' 2>/dev/null || skip "python3-botocore is not installed"
	S3_DATA=${S3_DATA:-$T/s3data}
	S3_PORT=${S3_PORT:-$(free_port)}
	mkdir -p "$S3_DATA"
	# --openssl-legacy-provider: s3rver's continuation tokens use DES.
	node --openssl-legacy-provider "$js" -a 127.0.0.1 -p "$S3_PORT" -d "$S3_DATA" -s \
		--configure-bucket "$1" >>"$T/s3rver.log" 2>&1 &
	S3_PID=$!
	PIDS+=("$S3_PID")
	S3_EP=http://127.0.0.1:$S3_PORT
	wait_http s3rver "$T/s3rver.log" "$S3_EP/"
	printf 'S3RVER:S3RVER\n' > "$T/s3.passwd"
	chmod 600 "$T/s3.passwd"
	# Staged writes in the test's own folder, not in /var/tmp.
	S3_OPTS="endpoint=$S3_EP,passwd_file=$T/s3.passwd,staging_dir=$T/staging"
}

s3_stop() {
	kill "$S3_PID" 2>/dev/null || true
	wait "$S3_PID" 2>/dev/null || true
}

# pjdfstest_build: builds pjdfstest from ../shared/pjdfstest (or
# $PJDFSTEST_SRC) into $T/pjd, or skips the test (it needs root and prove).
pjdfstest_build() {
	local src=${PJDFSTEST_SRC:-$top_srcdir/../shared/pjdfstest}
	[ "$(id -u)" = 0 ] || skip "pjdfstest needs root"
	command -v prove >/dev/null || skip "prove (perl) not installed"
	[ -f "$src/pjdfstest.c" ] || skip "no pjdfstest at $src"
	cp -r "$src" "$T/pjd"
	(cd "$T/pjd" && autoreconf -ifs && ./configure && make pjdfstest) >"$T/build.log" 2>&1 ||
		fail "building pjdfstest: $(tail -5 "$T/build.log")"
}

# pjd_failures DIR TEST: TEST's failing cases when run in DIR, one a line:
# those that said "not ok", those its plan names that never ran (it was
# cut short), or "no-plan" when it never started. The plan's count goes to
# $T/pjd.plan. A mount at DIR must still answer afterwards.
pjd_failures() {
	local out
	out=$(cd "$1" && timeout 300 prove -v "$2" 2>&1) || true   # prove says no when a case fails
	! mountpoint -q "$1" || answers "$1" || fail "the mount at $1 stopped answering in $2"
	awk -v plan="$T/pjd.plan" '
		/^1\.\.[0-9]+/ { n = substr($1, 4) + 0 }
		/^ok [0-9]+/ { seen[$2] = 1 }
		/^not ok [0-9]+/ { seen[$3] = 1; print $3 }
		END {
			print n + 0 > plan
			if (!n) print "no-plan"
			for (i = 1; i <= n; i++) if (!(i in seen)) print i
		}' <<<"$out"
}
