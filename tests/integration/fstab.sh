#!/bin/bash
# fstab: a real `mount` of fuse.cachefs lines through mount.fuse3, from a
# temporary fstab (mount -T), for a source directory and for a config file,
# with the options GPU nodes use; then `umount`.
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip "mount(8) of an fstab line needs root"
command -v mount.fuse3 >/dev/null || [ -x /sbin/mount.fuse3 ] || skip "mount.fuse3 not installed"
# mount(8) runs its helpers with root's standard PATH, where an installed
# cachefs lives; a test build is linked into /usr/local/sbin for the run.
link=/usr/local/sbin/cachefs
if [ -e "$link" ] || [ -L "$link" ]; then
	[ "$(readlink -f "$link")" = "$(readlink -f "$CACHEFS")" ] || skip "$link is another cachefs; not replacing it"
else
	mkdir -p /usr/local/sbin
	ln -s "$(readlink -f "$CACHEFS")" "$link"
	trap 'rc=$?; rm -f "$link"; (exit $rc); cleanup' EXIT
fi

mkdir -p "$T/src/d" "$T/mnt" "$T/mnt2"
head -c 3000000 /dev/urandom > "$T/src/d/data.bin"
opts=_netdev,allow_other,kernel_cache,max_background=128,attr_timeout=60,entry_timeout=60,ram_cache=64M
printf '%s %s fuse.cachefs %s 0 0\n' "$T/src" "$T/mnt" "$opts" > "$T/fstab"
printf '[mount /one]\nsource = %s\n[mount /two]\nsource = %s/d\n' "$T/src" "$T/src" > "$T/node.conf"
printf '%s %s fuse.cachefs _netdev,allow_other 0 0\n' "$T/node.conf" "$T/mnt2" >> "$T/fstab"

mount -T "$T/fstab" "$T/mnt" || fail "mount -T of the fstab line failed"
MOUNTS+=("$T/mnt")
findmnt -n -o FSTYPE,OPTIONS "$T/mnt" > "$T/findmnt"
grep -q "^fuse.cachefs .*allow_other" "$T/findmnt" || fail "mount table says: $(cat "$T/findmnt")"
cmp "$T/mnt/d/data.bin" "$T/src/d/data.bin" || fail "data differs through the fstab mount"
pass "fstab line mounts through mount.fuse3 ($(cat "$T/findmnt"))"

mount -T "$T/fstab" "$T/mnt2" || fail "mount -T of the config-file line failed"
MOUNTS+=("$T/mnt2")
[ "$(ls "$T/mnt2" | tr '\n' ' ')" = "one two " ] || fail "config mount lists: $(ls "$T/mnt2")"
cmp "$T/mnt2/two/data.bin" "$T/src/d/data.bin" || fail "data differs through the config-file mount"
pass "an fstab line naming a config file mounts its table"

umount "$T/mnt" || fail "umount failed"
umount "$T/mnt2" || fail "umount of the table failed"
! mountpoint -q "$T/mnt" && ! mountpoint -q "$T/mnt2" || fail "still mounted after umount"
# The daemons run as /usr/local/sbin/cachefs (the link): match their mount
# points. An ASan build takes a moment to exit after umount.
for _ in $(seq 200); do pgrep -f "$T/mnt" >/dev/null || break; sleep 0.05; done
! pgrep -f "$T/mnt" >/dev/null || fail "a daemon outlived umount by 10 s: $(pgrep -af "$T/mnt")"
pass "umount stops the daemons"
