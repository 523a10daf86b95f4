#!/bin/bash
# The S3 driver's requests are encoded and signed exactly as botocore does:
# odd keys (spaces, '+', '%', UTF-8, '=', '&', '~'), listing queries,
# ranges and a session token. The local S3 server does not check
# signatures, so this and the AWS test-suite vectors (test_sigv4) prove them.
. "$(dirname "$0")/../lib.sh"

/usr/bin/python3 -c 'import botocore' 2>/dev/null || skip "python3-botocore not installed"
req=$T/requests
tab=$'\t'
{
	for key in "photo.jpg" "a b/c d.jpg" "plus+sign" "100%/done" "ünïcödé/日本.txt" "eq=amp&semi;" \
		"tilde~dash-under_dot." "deep/er/and/deeper/x" "(paren)[brack]{brace}!*'" "sp  two  spaces "; do
		echo "GET${tab}${key}${tab}bytes=0-1048575${tab}-${tab}1700000000"
		echo "HEAD${tab}${key}${tab}-${tab}-${tab}1440938160"
	done
	echo "GET${tab}-${tab}-${tab}-${tab}1700000000${tab}list-type${tab}2${tab}prefix${tab}a b/ü+%${tab}delimiter${tab}/"
	echo "GET${tab}-${tab}-${tab}-${tab}1700000000${tab}list-type${tab}2${tab}max-keys${tab}100${tab}continuation-token${tab}1/2+3=="
	echo "GET${tab}obj${tab}bytes=5-9${tab}FwoGZXIvYXdzEJr//////////wEaDH+token=${tab}1700000000"
	echo "GET${tab}-${tab}-${tab}session/token+x${tab}1700000000${tab}list-type${tab}2${tab}prefix${tab}-"
} > "$req"
"$top_builddir/tests/sigv4-sign" "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" bkt < "$req" > "$T/signed"
/usr/bin/python3 "$top_srcdir/tests/s3tool.py" - compare-sign "$req" "$T/signed" ||
	fail "cachefs and botocore disagree"
pass "$(wc -l < "$req") requests signed identically to botocore"
