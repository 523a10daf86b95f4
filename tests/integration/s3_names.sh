#!/bin/bash
# Every key S3 can hold is reachable: keys of 1000 bytes and more, an
# object next to a same-named prefix (shown as NAME@object), objects named
# "." and ".." (.@object, ..@object). Attributes follow the object once
# dir_cache_ttl passed, whatever attr_timeout says. A ro mount says so in
# /proc/mounts.
. "$(dirname "$0")/../lib.sh"

s3_start data
L=$(printf 'L%.0s' $(seq 250))
long="$L/$L/$L/$L/key-of-more-than-1000-bytes"
echo long >"$T/long"
echo object >"$T/obj"
echo inside >"$T/in"
echo dot >"$T/dot"
echo dotdot >"$T/dotdot"
$S3TOOL "$S3_EP" put data "$long" "$T/long"
# s3rver lists a prefix two levels down only with markers (TESTING.md).
for k in "$L/" "$L/$L/" "$L/$L/$L/" "$L/$L/$L/$L/" "x/"; do $S3TOOL "$S3_EP" put data "$k" /dev/null; done
$S3TOOL "$S3_EP" put data a "$T/obj"
$S3TOOL "$S3_EP" put data a/in "$T/in"
$S3TOOL "$S3_EP" put data x/. "$T/dot"
$S3TOOL "$S3_EP" put data x/.. "$T/dotdot"
head -c 1000 /dev/urandom >"$T/v1"
$S3TOOL "$S3_EP" put data sized "$T/v1"

mount_logged s3://data "$T/m" "$T/log" -o "$S3_OPTS,ro,shards=2,dir_cache_ttl=2"
grep -q " $T/m fuse.cachefs ro[, ]" /proc/mounts || fail "/proc/mounts: $(grep "$T/m" /proc/mounts)"
[ "$(cat "$T/m/$long")" = long ] || fail "a key of ${#long} bytes"
[ -d "$T/m/a" ] && [ "$(cat "$T/m/a/in")" = inside ] || fail "the prefix a/"
ls "$T/m" | grep -qx 'a@object' || fail "the object a next to the prefix a/: $(ls "$T/m")"
[ "$(cat "$T/m/a@object")" = object ] || fail "reading a@object"
[ "$(ls -A "$T/m/x" | LC_ALL=C sort | tr '\n' ' ')" = "..@object .@object " ] || fail "objects . and ..: $(ls -a "$T/m/x")"
[ "$(cat "$T/m/x/.@object")" = dot ] && [ "$(cat "$T/m/x/..@object")" = dotdot ] || fail "reading .@object, ..@object"
echo "  a key of ${#long} bytes, a@object, x/.@object and x/..@object read right"
pass "every key is reachable"

[ "$(stat -c %s "$T/m/sized")" = 1000 ] || fail "size before the change"
head -c 2500 /dev/urandom >"$T/v2"
$S3TOOL "$S3_EP" put data sized "$T/v2"
sleep 2.5
[ "$(stat -c %s "$T/m/sized")" = 2500 ] || fail "stat shows size $(stat -c %s "$T/m/sized") after dir_cache_ttl, not 2500"
cmp -s "$T/v2" "$T/m/sized" || fail "the new bytes"
unmount_cachefs "$T/m"
pass "attributes follow the object after dir_cache_ttl; the mount is ro"
