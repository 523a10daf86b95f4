#!/bin/bash
# Installs every build and test dependency, builds cachefs twice (optimised,
# then with ASan+UBSan) and runs the whole test suite in each. Ends with the
# line "N passed, N failed, N skipped"; exits non-zero on any failure.
# Run as root from the source tree: the integration tests mount FUSE.
set -u -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
jobs=$(nproc)
# make distcheck tests an unpacked tarball: its tests find s3rver here.
export CACHEFS_TEST_SERVERS="$src/tests/s3"

"$src/tools/install-deps.sh" || { echo "0 passed, 1 failed (dependency install)"; exit 1; }
autoreconf -fi >/dev/null || { echo "0 passed, 1 failed (autoreconf)"; exit 1; }

passed=0 failed=0 skipped=0 errors=()
failures=$(mktemp)
trap 'rm -f "$failures"' EXIT

# run_suite NAME CONFIGURE-ARGS...: a fresh build directory per flavour.
run_suite() {
	local name=$1 dir="$src/_build/$1"
	shift
	rm -rf "$dir" && mkdir -p "$dir"
	echo "=== $name build ($*)"
	if ! (cd "$dir" && "$src/configure" -q "$@" >/dev/null && make -s -j"$jobs" >/dev/null); then
		errors+=("$name: build failed")
		failed=$((failed + 1))
		return
	fi
	echo "=== $name tests"
	(cd "$dir" && make -s -j"$jobs" check) || errors+=("$name: make check failed")
	local log="$dir/test-suite.log" n
	if [ -f "$log" ]; then
		for kind in PASS FAIL ERROR SKIP; do
			n=$(sed -n "s/^# $kind: *\([0-9]*\)$/\1/p" "$log" | head -n1)
			case $kind in
			PASS) passed=$((passed + ${n:-0})) ;;
			FAIL | ERROR) failed=$((failed + ${n:-0})) ;;
			SKIP) skipped=$((skipped + ${n:-0})) ;;
			esac
		done
		grep -E "^(FAIL|ERROR):" "$log" | sed "s/^/$name: /" || true
		# CI keeps only the end of this output: the last lines of each
		# failed test's log are printed again at the very end. (The log
		# quotes tests' own "FAIL: ..." lines too: only names with a log.)
		local t
		for t in $(sed -n 's/^\(FAIL\|ERROR\): *\([^ ]*\).*/\2/p' "$log"); do
			[ -f "$dir/$t.log" ] || continue
			echo "--- $name: the end of $t.log"
			tail -n 15 "$dir/$t.log" | sed "s/^/  /"
		done >>"$failures"
	else
		failed=$((failed + 1))
	fi
	# Sanitizer reports of daemons (whose stderr is gone) land in files.
	if ls "$dir"/sanitizer.* >/dev/null 2>&1; then
		errors+=("$name: sanitizer reports")
		failed=$((failed + 1))
		head -n 60 "$dir"/sanitizer.*
	fi
}

run_suite release
echo "=== make distcheck"
if (cd "$src/_build/release" && make -s distcheck >distcheck.log 2>&1); then
	passed=$((passed + 1))
else
	tail -n 30 "$src/_build/release/distcheck.log"
	errors+=("make distcheck failed")
	failed=$((failed + 1))
fi
ASAN_OPTIONS="log_path=$src/_build/asan/sanitizer:detect_leaks=1:abort_on_error=0" \
UBSAN_OPTIONS="log_path=$src/_build/asan/sanitizer:print_stacktrace=1:halt_on_error=1" \
	run_suite asan --enable-asan --enable-ubsan --enable-debug

cat "$failures"
for e in "${errors[@]}"; do echo "error: $e"; done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] && [ ${#errors[@]} = 0 ]
