#!/bin/bash
# Bad bytes in the store never reach a reader: random bytes flipped in the
# store file are found by cachefs-fsck (exit 1), and a mount on it still
# reads every file byte-correct, counting the corrupt pages and refetching
# them. A file changed while unmounted reads with its new bytes.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src"
for i in $(seq 8); do head -c $((3 << 20)) /dev/urandom > "$T/src/f$i"; done
want=$(pages_of "$T/src" $((1 << 20)))
opts=ram_cache=8M,shards=2,ssd_cache=$T/store:64M

mount_logged "$T/src" "$T/mnt" "$T/log1" -o "$opts"
same_tree "$T/src" "$T/mnt"
# Store writes trail the replies; wait until the store holds every page.
for _ in $(seq 300); do [ "$(store_pages "$T/store")" = "$want" ] && break; sleep 0.1; done
[ "$(store_pages "$T/store")" = "$want" ] || fail "the store holds $(store_pages "$T/store") of $want pages"
unmount_cachefs "$T/mnt"
wait
"$FSCK" "$T/store" >"$T/fsck0" || fail "fresh store not clean: $(cat "$T/fsck0")"

# Flip 16 random bytes in each of 5 pages of the data area.
python3 - "$T/store" <<'PY'
import os, random, struct, sys
with open(sys.argv[1], "r+b") as f:
    sb = f.read(88)
    page, nparts = struct.unpack_from("<II", sb, 12)
    slots, data_off = struct.unpack_from("<Q", sb, 40)[0], struct.unpack_from("<Q", sb, 64)[0]
    rnd = random.Random(7)
    # Slots fill from the start of each shard's range: pick used ones.
    for s in rnd.sample(range(6), 5):
        part = rnd.randrange(nparts)
        f.seek(data_off + (part * slots + s) * page + rnd.randrange(page - 16))
        f.write(os.urandom(16))
PY
rc=0; "$FSCK" "$T/store" >"$T/fsck1" || rc=$?
cat "$T/fsck1"
[ $rc = 1 ] || fail "fsck exit $rc on a corrupted store, wanted 1"
bad=$(sed -n 's/.* \([0-9]*\) corrupt pages.*/\1/p' "$T/fsck1")
[ "$bad" -ge 1 ] || fail "fsck found no corrupt page"
pass "cachefs-fsck finds $bad corrupt pages (exit 1)"

mount_logged "$T/src" "$T/mnt" "$T/log2" -o "$opts"
same_tree "$T/src" "$T/mnt"
unmount_cachefs "$T/mnt"
wait
cat "$T/log2"
corrupt=$(counter "$T/log2" 'corrupt')
[ "$corrupt" = "$bad" ] || fail "$corrupt corrupt pages counted by the daemon, fsck found $bad"
from_src=$(counter "$T/log2" 'bytes read from the source')
[ "$from_src" = $((bad << 20)) ] || fail "$from_src bytes from the source, wanted the $bad corrupt pages"
pass "$bad corrupt pages dropped and refetched, everything else from the SSD"
"$FSCK" "$T/store" >/dev/null || fail "store not clean after the refetch"

# Change one file while unmounted: same size, new bytes.
head -c $((3 << 20)) /dev/urandom > "$T/f1.new"
mv "$T/f1.new" "$T/src/f1"
mount_logged "$T/src" "$T/mnt" "$T/log3" -o "$opts"
same_tree "$T/src" "$T/mnt"
unmount_cachefs "$T/mnt"
wait
from_src=$(counter "$T/log3" 'bytes read from the source')
[ "$from_src" = $((3 << 20)) ] || fail "$from_src bytes from the source, wanted the changed file's 3 MiB"
pass "a file changed while unmounted reads with its new bytes"
