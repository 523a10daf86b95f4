#!/bin/bash
# Bad input gets a one-line message naming the problem and the right exit
# code: 2 for usage errors, 1 for a source or mount point that cannot work.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src" "$T/mnt" && echo hi > "$T/src/f" && touch "$T/file"

# expect CODE PATTERN ARGS...: cachefs ARGS exits CODE, stderr matches PATTERN.
expect() {
	local code=$1 pat=$2 rc=0
	shift 2
	"$CACHEFS" "$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = "$code" ] || fail "cachefs $*: exit $rc, wanted $code ($(cat "$T/err"))"
	grep -qE -- "$pat" "$T/err" || fail "cachefs $*: message '$(cat "$T/err")' lacks '$pat'"
	[ "$(wc -l < "$T/err")" -le 2 ] || fail "cachefs $*: more than a line or two of error"
	[ "${MOUNTED_OK:-}" ] || ! mountpoint -q "$T/mnt" || fail "cachefs $*: mounted anyway"
}

expect 2 "unknown option 'bogus'" "$T/src" "$T/mnt" -o bogus
expect 2 "unknown option 'nope'" "$T/src" "$T/mnt" -o ro,nope=1
expect 2 "invalid value 'abc' for option 'shards'" "$T/src" "$T/mnt" -o shards=abc
expect 2 "invalid value '12Q' for option 'ram_cache'" "$T/src" "$T/mnt" -o ram_cache=12Q
expect 2 "option 'page_size' needs a value" "$T/src" "$T/mnt" -o page_size
expect 2 "page_size=.*power of two" "$T/src" "$T/mnt" -o page_size=3000
expect 2 "ram_cache=.*available.*lower -o ram_cache" "$T/src" "$T/mnt" -o ram_cache=900T
expect 2 "missing SOURCE or MOUNTPOINT" "$T/src"
expect 1 "cannot read source .*no-such-dir.*No such file" "$T/no-such-dir" "$T/mnt"
expect 2 "file is a file, not a directory, so it was read as a config file: .*no \[mount /PATH\] section" "$T/file" "$T/mnt"
expect 1 "mount point .*not a directory" "$T/src" "$T/file"
expect 1 "mount point .*No such file.*mkdir -p" "$T/src" "$T/nomnt"
pass "usage errors and bad paths"

mount_cachefs "$T/src" "$T/mnt" -o ram_cache=64M
MOUNTED_OK=1 expect 1 "mount point .* is busy" "$T/src" "$T/mnt"
mountpoint -q "$T/mnt" || fail "first mount lost"
[ "$(grep -c " $T/mnt " /proc/mounts)" = 1 ] || fail "a second mount was stacked"
pass "busy mount point refused"
unmount_cachefs "$T/mnt"

"$CACHEFS" --help > "$T/help"
grep -q "ram_cache=SIZE" "$T/help" && grep -q "endpoint=VALUE" "$T/help" || fail "--help lacks the options"
"$CACHEFS" --version | grep -q "^cachefs [0-9]" || fail "--version"
pass "--help and --version"
