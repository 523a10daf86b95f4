#!/bin/bash
# A config file joining sources under one root: s3://, a local directory and
# an http:// source at a nested mount point, a root mount with a mount point
# inside it, per-mount options, -o over the file's options, `-o config=`,
# writes through the table (each to its own source; EXDEV between two,
# EROFS where a source or section cannot change, EBUSY on mount points), and
# --check-config naming the file, line and option of every mistake.
. "$(dirname "$0")/../lib.sh"

s3_start data
mkdir -p "$T/img/train" "$T/local/sub" "$T/root/extra"
for i in 1 2 3 4 5; do head -c $((i * 300000)) /dev/urandom > "$T/img/train/part$i"; done
head -c 3000000 /dev/urandom > "$T/img/big"
$S3TOOL "$S3_EP" put-tree data "$T/img" >/dev/null
echo hello > "$T/local/sub/x.txt"
echo "hidden by the mount point" > "$T/root/extra/shadowed"
echo top > "$T/root/top.txt"
(cd "$T/img" && find . -type f -printf '%P\t%s\n') > "$T/manifest"

cat > "$T/node.conf" <<CONF
# daemon-wide options first
ram_cache = 256M
shards = 2
endpoint = $S3_EP
passwd_file = $T/s3.passwd
staging_dir = $T/staging

[mount /training-data]
source = s3://data/train
s3_list_max_keys = 1

[mount /all-data]
source = s3://data

[mount /scratch/]
source = $T/local

[mount /web//data]
source = $S3_EP/data/
manifest = $T/manifest
CONF
"$CACHEFS" --check-config "$T/node.conf" > "$T/check" || fail "valid config refused: $(cat "$T/check")"
grep -q "valid, 4 mounts" "$T/check" || fail "--check-config said: $(cat "$T/check")"
pass "--check-config accepts a valid file"

mount_logged "$T/node.conf" "$T/mnt" "$T/log" -o ram_cache=128M
[ "$(ls "$T/mnt" | tr '\n' ' ')" = "all-data scratch training-data web " ] ||
	fail "root lists: $(ls "$T/mnt" | tr '\n' ' ')"
[ "$(ls "$T/mnt/web")" = data ] || fail "/web lists: $(ls "$T/mnt/web")"
[ -d "$T/mnt/web" ] && [ ! -e "$T/mnt/nope" ] && [ ! -e "$T/mnt/web/nope" ] || fail "virtual directories"
pass "the root lists the mount points; /web holds the nested one"
same_tree "$T/img/train" "$T/mnt/training-data"
same_tree "$T/img" "$T/mnt/all-data"
same_tree "$T/local" "$T/mnt/scratch"
same_tree "$T/img" "$T/mnt/web/data"
pass "every mount reads its source byte-identical"
grep -q "128 MiB RAM tier" "$T/log" || fail "-o ram_cache did not override the file: $(grep 'RAM tier' "$T/log")"
grep -q "mounted $T/node.conf at" "$T/log" || fail "fsname is not the config file: $(grep mounted "$T/log")"
unmount_cachefs "$T/mnt"
pass "-o overrides the file's options"
# Per-mount s3_list_max_keys=1: the 5-file listing of train/ takes 5+ pages there.
lists_train=$(grep "s3 s3://data/: " "$T/log" | head -n1 | grep -o '[0-9]* LIST' | cut -d' ' -f1)
lists_all=$(grep "s3 s3://data/: " "$T/log" | tail -n1 | grep -o '[0-9]* LIST' | cut -d' ' -f1)
[ "$lists_train" -ge 6 ] && [ "$lists_all" -le 4 ] ||
	fail "LIST requests: $lists_train with s3_list_max_keys=1, $lists_all without; expected >= 6 and <= 4"
pass "per-mount options apply to their mount only ($lists_train vs $lists_all LIST requests)"

# A root mount with a mount point inside it; -o config= instead of SOURCE.
cat > "$T/root.conf" <<CONF
[mount /]
source = $T/root
[mount /extra]
source = $T/local
CONF
mkdir -p "$T/mnt2"
"$CACHEFS" "$T/mnt2" -o "config=$T/root.conf" 2>"$T/log2" || fail "-o config= did not mount: $(cat "$T/log2")"
MOUNTS+=("$T/mnt2")
[ "$(ls "$T/mnt2" | tr '\n' ' ')" = "extra top.txt " ] || fail "root mount lists: $(ls "$T/mnt2" | tr '\n' ' ')"
[ "$(cat "$T/mnt2/extra/sub/x.txt")" = hello ] || fail "/extra is not the mount"
[ ! -e "$T/mnt2/extra/shadowed" ] || fail "the root source's extra/ shows through the mount point"
unmount_cachefs "$T/mnt2"
pass "a mount point inside a root mount hides the source's own entry"

# Writes through a table: each goes to its own source.
mkdir -p "$T/wa" "$T/wb" "$T/wro"
echo kept >"$T/wro/kept"
cat > "$T/rw.conf" <<CONF
endpoint = $S3_EP
passwd_file = $T/s3.passwd
staging_dir = $T/staging
[mount /a]
source = $T/wa
[mount /b]
source = $T/wb
[mount /s3]
source = s3://data/written
[mount /web]
source = $S3_EP/data/
manifest = $T/manifest
[mount /frozen]
source = $T/wro
ro = on
[mount /deep/er]
source = $T/wb
CONF
mount_logged "$T/rw.conf" "$T/mnt3" "$T/log3"
m=$T/mnt3
echo one >"$m/a/f1"
mkdir "$m/b/d"
echo two >"$m/b/d/f2"
mv "$m/b/d/f2" "$m/b/f2"
[ "$(cat "$T/wa/f1")" = one ] && [ "$(cat "$T/wb/f2")" = two ] || fail "writes did not reach their sources"
cp "$T/img/big" "$m/s3/big"
$S3TOOL "$S3_EP" get data written/big "$T/big.back"
cmp "$T/img/big" "$T/big.back" || fail "the S3 mount of the table did not get its object"
$PY3 - "$m" <<'EOF'
import errno, os, sys
m = sys.argv[1]
def refused(what, want, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        if e.errno != want:
            sys.exit(f"{what}: {os.strerror(e.errno)}, not {os.strerror(want)}")
        return
    sys.exit(f"{what}: succeeded")
refused("rename between two mounts", errno.EXDEV, os.rename, m + "/a/f1", m + "/b/f1")
refused("link between two mounts", errno.EXDEV, os.link, m + "/a/f1", m + "/b/f1")
refused("create in an http mount", errno.EROFS, open, m + "/web/new", "w")
refused("create in a ro section", errno.EROFS, open, m + "/frozen/new", "w")
refused("write to a ro section's file", errno.EROFS, open, m + "/frozen/kept", "a")
refused("mkdir above the mount points", errno.EROFS, os.mkdir, m + "/newtop")
refused("rmdir of a mount point", errno.EBUSY, os.rmdir, m + "/b")
refused("rename of a mount point", errno.EBUSY, os.rename, m + "/a", m + "/c")
refused("mkdir beside a nested mount point", errno.EROFS, os.mkdir, m + "/deep/new")
# Calls on a file open for writing (ftruncate, fsync, close) reach its source.
with open(m + "/a/t", "wb") as f:
    f.write(b"0123456789")
    f.flush()
    os.ftruncate(f.fileno(), 4)
    os.fsync(f.fileno())
EOF
[ "$(cat "$T/wa/t")" = 0123 ] || fail "ftruncate through a table's file: $(cat "$T/wa/t")"
printf '[mount /x]\nsource = %s\nro = on\n[mount /web]\nsource = %s/data/\nmanifest = %s\n' \
	"$T/wro" "$S3_EP" "$T/manifest" >"$T/ro.conf"
mount_logged "$T/ro.conf" "$T/mnt4" "$T/log4"
grep -q " $T/mnt4 fuse.cachefs ro," /proc/mounts || fail "a table of read-only sections is not a ro mount: $(grep "$T/mnt4" /proc/mounts)"
unmount_cachefs "$T/mnt4"
mv "$m/a/f1" "$m/b/f1"   # mv copies across mounts, as across file systems
[ ! -e "$T/wa/f1" ] && [ "$(cat "$T/wb/f1")" = one ] || fail "mv across two mounts did not copy"
[ "$(cat "$T/wro/kept")" = kept ] || fail "the ro section's file changed"
unmount_cachefs "$T/mnt3"
pass "writes through a table reach their own sources; EXDEV between two, EROFS for http and ro, EBUSY on mount points"

# Mistakes: each named with file, line and option; nothing mounts.
check_bad() {
	local what=$1 want=$2 body=$3
	printf '%s\n' "$body" > "$T/bad.conf"
	if "$CACHEFS" --check-config "$T/bad.conf" 2>"$T/err"; then fail "$what: accepted"; fi
	grep -q -- "$want" "$T/err" || fail "$what: expected '$want', got: $(cat "$T/err")"
	if "$CACHEFS" "$T/bad.conf" "$T/mnt" 2>"$T/err2"; then fail "$what: mounted"; fi
	grep -qF -- "$(sed 's/^cachefs: //' "$T/err")" "$T/err2" ||
		fail "$what: mount and --check-config disagree: $(cat "$T/err2")"
	echo "  $what: $(cat "$T/err")"
}
check_bad "unknown option" "bad.conf:2: unknown option 'ram_cach'" $'# x\nram_cach = 1G\n[mount /a]\nsource = /tmp'
check_bad "bad value" "bad.conf:1: invalid value 'lots' for option 'shards'" $'shards = lots\n[mount /a]\nsource = /tmp'
check_bad "daemon option in a mount" "bad.conf:3: \[mount /a\]: option 'ram_cache' applies to the whole daemon" \
	$'[mount /a]\nsource = /tmp\nram_cache = 1G'
check_bad "bad per-mount value" "bad.conf:3: \[mount /a\]: invalid value 'x' for option 'retries'" \
	$'[mount /a]\nsource = /tmp\nretries = x'
check_bad "mount without source" "\[mount /a\] has no 'source =' line" $'[mount /a]\nretries = 2'
check_bad "relative mount point" "bad.conf:2: \[mount data\]: the mount point must be an absolute path" \
	$'[mount data]\nsource = /tmp'
check_bad "mount point twice" "bad.conf:6: \[mount /a\] is defined twice" \
	$'[mount /a]\nsource = /tmp\n[mount /c]\nsource = /tmp\n[mount /a/]\nsource = /tmp'
check_bad "unknown section" "bad.conf:2: unknown section \[mounts /a\]" $'[mounts /a]\nsource = /tmp'
check_bad "no mounts" "no \[mount /PATH\] section" $'shards = 2'
check_bad "not INI" "bad.conf:1: unknown option 'this is not ini'" $'this is not ini'
check_bad "unknown scheme" "source ftp://x: no driver" $'[mount /a]\nsource = ftp://x'
if "$CACHEFS" --check-config "$T/missing.conf" 2>"$T/err"; then fail "missing file accepted"; fi
grep -q "config file $T/missing.conf: No such file" "$T/err" || fail "missing file: $(cat "$T/err")"
printf '[mount /a]\nsource = s3://nope\nendpoint = %s\npasswd_file = %s\n[mount /b]\nsource = /tmp\n' \
	"$S3_EP" "$T/s3.passwd" > "$T/nobucket.conf"
if "$CACHEFS" "$T/nobucket.conf" "$T/mnt" 2>"$T/err"; then fail "a mount of an unknown bucket mounted"; fi
grep -q "\[mount /a\] bucket nope does not exist" "$T/err" || fail "unknown bucket: $(cat "$T/err")"
! mountpoint -q "$T/mnt" || fail "a failed table left a mount"
pass "config mistakes and failing sources are refused, naming file, line and mount"
