#!/bin/bash
# POSIX conformance of writes through a local-source mount: pjdfstest run
# as root from inside the mount. Every failing case is run again on the
# backing directory: a case that fails there too is the backing file
# system's, any other is ours.
. "$(dirname "$0")/../lib.sh"

pjdfstest_build
mkdir -p "$T/src" "$T/backing"
# Other users act in the tests: allow_other, with the kernel checking modes.
mount_logged "$T/src" "$T/m" "$T/log" -o allow_other,default_permissions,shards=2
(cd "$T/m" && timeout 1200 prove -r "$T/pjd/tests" >"$T/prove.log" 2>&1) || true
tail -3 "$T/prove.log"
# Every file the summary report names: failed cases, a bad plan or exit
# status, or TODO cases that passed (pjd_failures then finds nothing).
failed=$(awk '/^Test Summary Report/ { r = 1 } r && /^\/.*\.t +\(Wstat/ { print $1 }' "$T/prove.log")
grep -q "^Result: PASS" "$T/prove.log" || [ -n "$failed" ] || fail "prove did not finish: $(tail -5 "$T/prove.log")"
ours=""
for t in $failed; do
	extra=$(comm -23 <(pjd_failures "$T/m" "$t" | sort) <(pjd_failures "$T/backing" "$t" | sort) | tr '\n' ' ')
	if [ -n "$extra" ]; then
		ours="$ours $t (cases $extra)"
	else
		echo "  $t: its failing cases fail on the backing file system too"
	fi
done
answers "$T/m" || fail "the mount stopped answering during pjdfstest"
[ -z "$ours" ] || fail "pjdfstest cases that pass on the backing file system but not through cachefs:$ours"
pass "pjdfstest: $(grep -o 'Files=[0-9]*, Tests=[0-9]*' "$T/prove.log"); every failing case also fails on the backing file system"
