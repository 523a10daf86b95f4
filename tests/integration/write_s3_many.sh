#!/bin/bash
# 64 writers of 64 MiB each at once through an S3 mount: every object
# arrives whole (its size; three of them byte for byte), and the daemon's peak memory stays within write_buffer plus
# a bounded overhead (writers wait for part buffers, they never get ENOMEM).
. "$(dirname "$0")/../lib.sh"

s3_start bkt
# A RAM tier too small for the files to be loaded into it at close, and not
# faulted in ahead (ram_prefault would commit all 128M of it): the peak is
# then the uploads' own memory.
mount_logged s3://bkt "$T/m" "$T/log" -o "$S3_OPTS,write_part_size=8M,write_buffer=64M,ram_cache=128M,ram_prefault=off,shards=2"
pid=$(daemon_pid "$T/m")
head -c $((64 << 20)) /dev/urandom >"$T/data"
want=$(md5sum <"$T/data" | cut -d' ' -f1)

seq 64 | xargs -P 64 -I{} sh -c 'cp "$1" "$2/w{}.bin"' sh "$T/data" "$T/m" 2>"$T/err" ||
	fail "a writer failed: $(head -3 "$T/err")"
peak=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
# Every object's size, and three of them byte for byte.
$S3TOOL "$S3_EP" ls bkt w >"$T/ls"
[ "$(grep -c "	$((64 << 20))$" "$T/ls")" = 64 ] || fail "not all 64 objects are whole in the bucket: $(sort -k2 -n "$T/ls" | head -3)"
for i in 1 17 64; do
	$S3TOOL "$S3_EP" get bkt "w$i.bin" "$T/back"
	[ "$(md5sum <"$T/back" | cut -d' ' -f1)" = "$want" ] || fail "w$i.bin differs in the bucket"
done
# 64M of part buffers, plus the daemon's own (RAM tier bookkeeping, HTTP
# buffers): 161 MiB measured at the peak. ASan keeps freed memory in its
# quarantine (256M) and a shadow beside it: more room there.
limit=$(((64 + 192) << 10))
sanitized && limit=$(((64 + 192 + 512) << 10))
[ "$peak" -le "$limit" ] || fail "peak RSS $((peak >> 10)) MiB with write_buffer=64M (limit $((limit >> 10)) MiB)"
pass "64 writers x 64 MiB: all 64 objects whole in the bucket (three compared byte for byte); daemon peak RSS $((peak >> 10)) MiB with write_buffer=64M"
