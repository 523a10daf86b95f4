#!/bin/bash
# The Python fsspec client (clients/python) against a live cluster: three
# nodes on one bucket, registered in etcd. The package is installed into a
# venv as a user would install it, fsspec finds "cachefs" through its entry
# point, and clients/python/tests run against the nodes, comparing bytes
# with the bucket's local copy and node 0's mount.
. "$(dirname "$0")/../lib.sh"

$PY3 -c 'import fsspec, pytest, requests, setuptools, wheel, xxhash' 2>/dev/null ||
	skip "the Python client wants python3-fsspec, -pytest, -requests, -setuptools, -wheel and -xxhash"
$PY3 -m venv --system-site-packages "$T/venv" >"$T/venv.log" 2>&1 ||
	skip "python3 -m venv does not work (python3-venv): $(tail -n 1 "$T/venv.log")"

# ---- the bucket: a tree of small files, edge sizes and odd names, a file of five stripes, a table ----
s3_start data
$MKTREE "$T/data" --small 50 >/dev/null
head -c 20000000 /dev/urandom > "$T/data/big.bin"
$PY3 -c 'import random
r = random.Random(1)
print("id,name,value")
for i in range(2000):
    print(f"{i},n{r.randrange(10**6)},{r.random():.6f}")' > "$T/data/table.csv"
# Markers: s3rver lists prefixes below the top level only with them (TESTING.md).
$S3TOOL "$S3_EP" put-tree data "$T/data" --markers >/dev/null
. "$(dirname "$0")/../cluster_lib.sh"

# ---- etcd and three nodes ----
etcd_start
for n in 0 1 2; do node $n -o "etcd=http://127.0.0.1:$EP,cluster=py,cluster_ttl=2"; done
members_are 3 0 1 2
WORKERS=127.0.0.1:${P[0]},127.0.0.1:${P[1]},127.0.0.1:${P[2]}

# ---- the package, installed from a copy (its build leaves build/ and *.egg-info behind) ----
cp -r "$top_srcdir/clients/python" "$T/src"
"$T/venv/bin/pip" install --no-deps --no-build-isolation --no-index "$T/src" >"$T/pip.log" 2>&1 ||
	fail "pip install of clients/python: $(tail -n 5 "$T/pip.log")"
cd "$T"    # not the source folder: the tests must import the installed package
"$T/venv/bin/python" - "$WORKERS" "$T/token" <<'PY' || fail "fsspec does not find cachefs through its entry point"
import sys
import fsspec
fs = fsspec.filesystem("cachefs", workers=sys.argv[1], token_file=sys.argv[2])
assert type(fs).__module__ == "cachefs_fsspec.core" and "/venv/" in sys.modules["cachefs_fsspec"].__file__, fs
PY
pass "installed in a venv; fsspec.filesystem(\"cachefs\") finds it through its entry point"

CACHEFS_WORKERS=$WORKERS CACHEFS_ETCD=127.0.0.1:$EP CACHEFS_CLUSTER=py CACHEFS_TOKEN_FILE=$T/token \
	CACHEFS_MNT=$T/m0 CACHEFS_DATA=$T/data PYTHONDONTWRITEBYTECODE=1 \
	"$T/venv/bin/python" -m pytest -q -p no:cacheprovider "$top_srcdir/clients/python/tests" ||
	fail "clients/python/tests (above); node 0 logged: $(tail -n 3 "$T/log0")"
pass "clients/python/tests: every method through workers= and etcd, byte for byte"
for n in 0 1 2; do unmount_cachefs "$T/m$n"; done
