#!/bin/bash
# pjdfstest on an S3 mount: the test files whose every case applies to an
# object store pass. The others test what a bucket cannot hold (symlinks,
# FIFOs, devices, hard links), directory link counts, and the times of a
# directory that changes when a name in it does: a prefix has no times of
# its own. The README lists the groups.
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip "pjdfstest needs root"
command -v prove >/dev/null || skip "prove (perl) not installed"
src=${PJDFSTEST_SRC:-$top_srcdir/../shared/pjdfstest}
[ -f "$src/pjdfstest.c" ] || skip "no pjdfstest at $src"
cp -r "$src" "$T/pjd"
(cd "$T/pjd" && autoreconf -ifs && ./configure && make pjdfstest) >"$T/build.log" 2>&1 ||
	fail "building pjdfstest: $(tail -5 "$T/build.log")"

s3_start pjd
mount_logged s3://pjd "$T/m" "$T/log" -o "$S3_OPTS,staging_dir=$T/staging,allow_other,default_permissions,shards=2"
# Measured to apply (every other file has cases that do not; see above).
tests="
	chmod/08.t chmod/09.t chmod/10.t
	chown/08.t chown/09.t chown/10.t
	ftruncate/08.t ftruncate/10.t ftruncate/11.t ftruncate/14.t
	link/05.t link/12.t link/13.t link/14.t link/15.t link/16.t
	mkdir/08.t mkdir/09.t mkdir/11.t mkdir/12.t
	mkfifo/08.t mkfifo/10.t mkfifo/11.t mkfifo/12.t
	mknod/09.t mknod/10.t
	open/09.t open/10.t open/11.t open/13.t open/14.t open/15.t open/18.t open/19.t open/20.t open/21.t
	rename/06.t rename/07.t rename/08.t rename/15.t rename/16.t rename/22.t
	rmdir/09.t rmdir/10.t rmdir/13.t rmdir/14.t rmdir/15.t
	symlink/09.t symlink/10.t symlink/11.t symlink/12.t
	truncate/08.t truncate/10.t truncate/11.t truncate/14.t
	unlink/09.t unlink/10.t unlink/12.t unlink/13.t
	utimensat/03.t
"
failed=""
for t in $tests; do
	(cd "$T/m" && timeout 120 prove "$T/pjd/tests/$t" >"$T/one.log" 2>&1) || {
		failed="$failed $t"
		(cd "$T/m" && prove -v "$T/pjd/tests/$t" 2>&1 | grep "^not ok" | head -3) || true
	}
done
[ -z "$failed" ] || fail "pjdfstest files that applied to S3 and failed:$failed"
pass "pjdfstest on S3: $(echo $tests | wc -w) test files of open, truncate, ftruncate, unlink, rmdir, mkdir, rename, chmod, chown, utimensat (and the error cases of link, symlink, mkfifo, mknod) pass"
