#!/bin/bash
# Concurrent readers of missing pages cause exactly one source read per page
# (single flight), and a warm pass reads nothing from the source. The proof
# is the daemon's page-cache counters, logged when it unmounts.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/src" "$T/mnt"
head -c $((8 << 20)) /dev/urandom > "$T/src/f"           # exactly 8 pages of 1 MiB
"$CACHEFS" "$T/src" "$T/mnt" -f -o ram_cache=64M,shards=2 2>"$T/log" &
MOUNTS+=("$T/mnt")
for _ in $(seq 100); do mountpoint -q "$T/mnt" && break; sleep 0.05; done
mountpoint -q "$T/mnt" || fail "mount did not appear: $(cat "$T/log")"

# O_DIRECT bypasses the kernel page cache, so every read reaches the daemon:
# 8 threads x 100 reads of random 1 MiB pages pile up on the same misses.
$BENCH randread "$T/mnt/f" --direct --bs 1M --threads 8 --ios 100 >/dev/null
$BENCH randread "$T/mnt/f" --direct --bs 64K --threads 4 --ios 200 >/dev/null
cmp "$T/src/f" "$T/mnt/f" || fail "bytes differ"
fusermount3 -u "$T/mnt"
wait
line=$(grep "page cache:" "$T/log") || fail "no counters logged: $(cat "$T/log")"
echo "$line"
fetches=$(sed -n 's/.* \([0-9]*\) fetches .*/\1/p' <<< "$line")
from_src=$(sed -n 's/.*; \([0-9]*\) bytes read from the source.*/\1/p' <<< "$line")
joins=$(sed -n 's/.* \([0-9]*\) joined a fetch.*/\1/p' <<< "$line")
[ "$fetches" = 8 ] || fail "$fetches source reads for 8 pages"
[ "$from_src" = $((8 << 20)) ] || fail "$from_src bytes read from the source, wanted one pass"
[ "$joins" -gt 0 ] || fail "no reader ever waited on another's fetch: the test raced nothing"
pass "8 pages, 1600 concurrent O_DIRECT reads: 8 source reads, $joins joined"
