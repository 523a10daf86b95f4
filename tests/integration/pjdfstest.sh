#!/bin/bash
# POSIX conformance of writes through a local-source mount: pjdfstest, built
# from ../shared/pjdfstest (or $PJDFSTEST_SRC), run as root from inside the
# mount. Every test file that fails through cachefs is run again on the
# backing directory: a failure that happens there too is the backing file
# system's, any other is ours.
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip "pjdfstest needs root"
command -v prove >/dev/null || skip "prove (perl) not installed"
src=${PJDFSTEST_SRC:-$top_srcdir/../shared/pjdfstest}
[ -f "$src/pjdfstest.c" ] || skip "no pjdfstest at $src"
cp -r "$src" "$T/pjd"
(cd "$T/pjd" && autoreconf -ifs && ./configure && make pjdfstest) >"$T/build.log" 2>&1 ||
	fail "building pjdfstest: $(tail -5 "$T/build.log")"

mkdir -p "$T/src" "$T/backing"
# Other users act in the tests: allow_other, with the kernel checking modes.
mount_logged "$T/src" "$T/m" "$T/log" -o allow_other,default_permissions,shards=2
(cd "$T/m" && prove -r "$T/pjd/tests" >"$T/prove.log" 2>&1) || true
tail -3 "$T/prove.log"
# Summary lines of files with failures (TODO tests that passed are listed with "Failed: 0").
failed=$(awk '/^\/.*\.t +\(Wstat/ && !/Failed: 0\)/ { print $1 }' "$T/prove.log")
grep -q "^Result: PASS" "$T/prove.log" || [ -n "$failed" ] || fail "prove did not finish: $(tail -5 "$T/prove.log")"
ours=""
for t in $failed; do
	if (cd "$T/backing" && prove "$t" >/dev/null 2>&1); then
		ours="$ours $t"
		(cd "$T/m" && prove -v "$t" 2>&1 | grep "^not ok" | head -5) || true
	else
		echo "  $t fails on the backing file system too"
	fi
done
[ -z "$ours" ] || fail "pjdfstest files that pass on the backing file system but not through cachefs:$ours"
pass "pjdfstest: $(grep -o 'Files=[0-9]*, Tests=[0-9]*' "$T/prove.log"); every failure also fails on the backing file system"
