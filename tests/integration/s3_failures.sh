#!/bin/bash
# An s3:// mount when things go wrong: bad URLs, unknown buckets and keys,
# missing or exposed credentials, an endpoint that does not answer, the
# server dying or hanging mid-read (EIO within the timeout, no hung reader,
# the daemon lives and recovers), and an object rewritten behind the mount.
. "$(dirname "$0")/../lib.sh"

s3_start data
head -c $((6 << 20)) /dev/urandom > "$T/obj"
$S3TOOL "$S3_EP" put data big.bin "$T/obj"
$S3TOOL "$S3_EP" put data hang.bin "$T/obj"
must_refuse "malformed URL" "invalid S3 URL" "s3://" -o "$S3_OPTS"
must_refuse "bad bucket name" "invalid S3 URL" "s3://no|pe/x" -o "$S3_OPTS"
must_refuse "unknown bucket" "bucket nope does not exist" s3://nope -o "$S3_OPTS"
printf 'WRONGKEY:whatever\n' > "$T/bad.passwd"; chmod 600 "$T/bad.passwd"
must_refuse "unknown access key" "access denied to bucket data.*InvalidAccessKeyId" s3://data \
	-o "endpoint=$S3_EP,passwd_file=$T/bad.passwd"
chmod 644 "$T/bad.passwd"
must_refuse "passwd_file readable by others" "chmod 600" s3://data -o "endpoint=$S3_EP,passwd_file=$T/bad.passwd"
mkdir -p "$T/home"
HOME=$T/home AWS_PROFILE= AWS_ACCESS_KEY_ID= AWS_SECRET_ACCESS_KEY= \
	must_refuse "no credentials" "no credentials for bucket data" s3://data -o "endpoint=$S3_EP"
must_refuse "endpoint that does not answer" "cannot reach the object store" s3://data \
	-o "endpoint=http://127.0.0.1:$(free_port),passwd_file=$T/s3.passwd,timeout=2"
must_refuse "endpoint that is not a URL" "invalid endpoint" s3://data -o "endpoint=127.0.0.1,passwd_file=$T/s3.passwd"
must_refuse "write_part_size under S3's 5M" "write_part_size=4M must be from 5M to 5G" s3://data -o "$S3_OPTS,write_part_size=4M"
must_refuse "copy_max over CopyObject's 5G" "copy_max=6G is over the 5G" s3://data -o "$S3_OPTS,copy_max=6G"
pass "bad input is refused at mount with a clear message"

# Credentials from ~/.aws/credentials, and a secret on the command line that
# ps does not show.
mkdir -p "$T/home/.aws"
printf '[ci]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n' > "$T/home/.aws/credentials"
HOME=$T/home AWS_PROFILE=ci mount_logged s3://data "$T/mnt" "$T/log0" -o "endpoint=$S3_EP"
cmp -s "$T/obj" "$T/mnt/big.bin" || fail "read with profile credentials"
grep -q "credentials from ~/.aws/credentials \[ci\]" "$T/log0" || fail "credential source not logged: $(cat "$T/log0")"
unmount_cachefs "$T/mnt"
mount_logged s3://data "$T/mnt" "$T/log1" -o "endpoint=$S3_EP,access_key=S3RVER,secret_key=HushHush1234,timeout=30"
pid=$(daemon_pid "$T/mnt")
[ -n "$pid" ] || fail "no daemon"
if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "Hush"; then fail "the secret shows in ps"; fi
# A fixed mask: neither the secret nor its length shows.
tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "secret_key=\*\*\*\*," || fail "cmdline: $(tr '\0' ' ' < "/proc/$pid/cmdline")"
cmp -s "$T/obj" "$T/mnt/big.bin" || fail "read with option credentials"
unmount_cachefs "$T/mnt"
if grep -q "HushHush1234" "$T/log0" "$T/log1"; then fail "the secret is in the log"; fi
pass "profile credentials; a secret given as an option is hidden from ps and logs"

# The server dies mid-read: the reader gets EIO within the timeout, the
# daemon stays up, and reads recover once the server is back.
port=$(free_port)
mount_logged s3://data "$T/mnt" "$T/log" -o "$S3_OPTS,timeout=4,retries=3,shards=2,max_readahead=1M,metrics=127.0.0.1:$port"
dd if="$T/mnt/big.bin" of=/dev/null bs=1M count=1 iflag=direct status=none
s3_stop
start=$(date +%s)
if timeout 60 dd if="$T/mnt/big.bin" of=/dev/null bs=1M skip=3 count=1 iflag=direct 2>"$T/dd.err"; then
	fail "a read with the server down succeeded"
fi
rc=$?
took=$(($(date +%s) - start))
[ "$rc" != 124 ] || fail "the reader hung with the server down"
grep -q "Input/output error" "$T/dd.err" || fail "expected EIO, got: $(cat "$T/dd.err")"
mountpoint -q "$T/mnt" && dd if="$T/mnt/big.bin" of=/dev/null bs=1M count=1 iflag=direct status=none ||
	fail "the daemon died"
grep -q "s3 read s3://data/big.bin bytes=3145728-4194303: .*reader gets EIO" "$T/log" ||
	fail "no failure line naming bucket, key and range: $(cat "$T/log")"
echo "  EIO after ${took}s with timeout=4"
# The refused connections show as retries by cause, and the failure as one.
curl -sf "http://127.0.0.1:$port/metrics" >"$T/scrape" || fail "no metrics"
if command -v promtool >/dev/null; then promtool check metrics <"$T/scrape" || fail "promtool rejects the S3 metrics"; fi
retries=$(awk '$1 == "cachefs_source_retries_total{cause=\"connection\"}" { print $2 }' "$T/scrape")
failures=$(awk '$1 == "cachefs_source_request_failures_total" { print $2 }' "$T/scrape")
[ "${retries:-0}" -ge 1 ] && [ "${failures:-0}" -ge 1 ] || fail "retries by cause: $(grep -E 'retries|failures' "$T/scrape")"
grep -q '^cachefs_source_requests_total{kind="get"} [1-9]' "$T/scrape" || fail "no GETs counted"
echo "  metrics: $retries connection retries, $failures failed requests"
s3_start data
cmp -s "$T/obj" "$T/mnt/big.bin" || fail "reads did not recover after the server came back"
pass "server stopped: EIO within the timeout, no hang, recovery"

# The server hangs (SIGSTOP): the request times out instead of waiting forever.
dd if="$T/mnt/hang.bin" of=/dev/null count=0 status=none   # looked up and opened: no request left but GETs
kill -STOP "$S3_PID"
start=$(date +%s)
if timeout 60 dd if="$T/mnt/hang.bin" of=/dev/null bs=1M skip=3 count=1 iflag=direct 2>"$T/dd.err"; then
	kill -CONT "$S3_PID"
	fail "a read from a stopped server succeeded"
fi
rc=$?
kill -CONT "$S3_PID"
[ "$rc" != 124 ] || fail "the reader hung on a stopped server"
grep -q "Input/output error" "$T/dd.err" || fail "expected EIO, got: $(cat "$T/dd.err")"
echo "  EIO after $(($(date +%s) - start))s from a stopped server with timeout=4"
cmp -s "$T/obj" "$T/mnt/hang.bin" || fail "reads did not recover after SIGCONT"
unmount_cachefs "$T/mnt"
pass "a hung server times out"

# Rewritten behind the mount: an open file never mixes old and new pages;
# the new object shows once the TTLs pass.
mount_logged s3://data "$T/mnt" "$T/log2" -o "$S3_OPTS,dir_cache_ttl=4,attr_timeout=1,entry_timeout=1,shards=2"
dd if="$T/mnt/big.bin" of=/dev/null bs=1M count=1 iflag=direct status=none
head -c $((6 << 20)) /dev/urandom > "$T/obj2"
$S3TOOL "$S3_EP" put data big.bin "$T/obj2"
if cat "$T/mnt/big.bin" > "$T/got" 2>"$T/cat.err"; then
	cmp -s "$T/got" "$T/obj" || cmp -s "$T/got" "$T/obj2" || fail "a mix of old and new bytes"
	echo "  read within the TTL: one whole version ($(cmp -s "$T/got" "$T/obj" && echo old || echo new))"
else
	grep -q "Stale file handle" "$T/cat.err" || fail "unexpected error: $(cat "$T/cat.err")"
	grep -q "changed on the server while open" "$T/log2" || fail "no log line for the change"
	echo "  read within the TTL: ESTALE (page 0 cached from the old object, the rest is new)"
fi
sleep 4.5
cmp -s "$T/obj2" "$T/mnt/big.bin" || fail "the rewritten object did not show after the TTL"
unmount_cachefs "$T/mnt"
pass "a rewritten object: never mixed, new bytes after the TTL"
