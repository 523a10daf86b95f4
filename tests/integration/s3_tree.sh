#!/bin/bash
# A 3000-object bucket through an s3:// mount, against a real S3 server
# (s3rver) on loopback: nested prefixes with dir/ markers, odd names, edge
# sizes, listings paginated 100 keys at a time. Every file reads
# byte-identical; 8 concurrent readers agree; after one listing, reading
# each small file costs exactly one GET and no HEAD.
. "$(dirname "$0")/../lib.sh"

s3_start data
$PY3 - "$T/src" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(7)
def put(rel, size):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(rnd.randbytes(size))
n = 0
for i in range(1200):                       # one flat folder: 12 listing pages
    put(f"flat/img_{i:05d}.jpg", rnd.randint(1, 8192)); n += 1
for a in range(10):                         # two levels of prefixes
    for b in range(5):
        for c in range(30):
            put(f"nested/d{a}/e{b}/f{c}.bin", rnd.randint(0, 3000)); n += 1
odd = ["sp ace.txt", "plus+sign", "per%cent", "eq=amp&", "ünïcödé.txt", "日本語.dat", "tilde~x",
       ".hidden", "dir with space/inner file", "a+b/c%d/e f", "(paren)[x]", "semi;colon,comma"]
for name in odd:
    put(f"odd/{name}", rnd.randint(1, 5000)); n += 1
for rel, size in [("big/five", 5 * 2**20 + 1), ("big/two", 2 * 2**20), ("big/empty", 0),
                  ("big/one", 1), ("big/page-minus-1", 2**20 - 1)]:
    put(rel, size); n += 1
i = 0
while n < 3000:                             # top up to 3000 objects at the root
    put(f"top_{i:04d}", rnd.randint(1, 2048)); n += 1; i += 1
print(n, "files")
PY
$S3TOOL "$S3_EP" put-tree data "$T/src" --markers >/dev/null
[ "$(find "$T/src" -type f | wc -l)" = 3000 ] || fail "expected 3000 objects"
pass "3000 objects uploaded"

mount_logged s3://data "$T/mnt" "$T/log" -o "$S3_OPTS,s3_list_max_keys=100,shards=2,ram_cache=256M"
same_tree "$T/src" "$T/mnt"
pass "every object reads byte-identical (cold)"
diff <(cd "$T/src" && find . -printf '%y %s %P\n' | grep '^f' | LC_ALL=C sort) \
	<(cd "$T/mnt" && find . -printf '%y %s %P\n' | grep '^f' | LC_ALL=C sort) || fail "sizes differ"
pass "sizes from the listings match"
[ "$(ls "$T/mnt/flat" | wc -l)" = 1200 ] || fail "flat/ lists $(ls "$T/mnt/flat" | wc -l) entries, not 1200"
[ -f "$T/mnt/odd/dir with space/inner file" ] || fail "nested odd name missing"
[ ! -e "$T/mnt/flat/nope.jpg" ] || fail "a missing name exists"
pass "paginated listing of 1200 keys, nested odd names, negative lookup"

echo 3 > /proc/sys/vm/drop_caches
want=$(md5sum < "$T/src/big/five")
readers=()
for i in $(seq 8); do
	(md5sum < "$T/mnt/big/five" > "$T/sum.$i") &
	readers+=($!)
done
wait "${readers[@]}"
for i in $(seq 8); do
	[ "$(cat "$T/sum.$i")" = "$want" ] || fail "reader $i read different bytes"
done
pass "8 concurrent readers of one object agree"
unmount_cachefs "$T/mnt"
gets_before=$(counter "$T/log" 'GET')

# Request accounting: one listing, then one GET per small file, no HEAD.
mount_logged s3://data "$T/mnt" "$T/log2" -o "$S3_OPTS,shards=2,ram_cache=256M"
ls "$T/mnt" > /dev/null
ls -l "$T/mnt/flat" > /dev/null
cat "$T/mnt"/flat/* > /dev/null
unmount_cachefs "$T/mnt"
gets=$(counter "$T/log2" 'GET')
heads=$(counter "$T/log2" 'HEAD')
lists=$(counter "$T/log2" 'LIST requests')
echo "1200 files: $gets GET, $heads HEAD, $lists LIST (first mount: $gets_before GET)"
[ "$gets" = 1200 ] || fail "$gets GETs for 1200 one-page files"
[ "$heads" = 0 ] || fail "$heads HEADs after the directory was listed"
# The mount's check, the root, and flat/ in two pages of 1000 keys.
[ "$lists" -le 4 ] || fail "$lists LIST requests for two directories"
pass "one GET per file after the listing, no HEAD"
