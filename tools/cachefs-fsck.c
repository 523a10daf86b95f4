/*
 * cachefs-fsck: checks an SSD page store offline (superblock, every log,
 * every cached page's checksum), or resets it so the next mount starts it
 * empty. Exit status: 0 clean, 1 corruption found, 2 usage or unreadable.
 */
#include "config.h"
#include "iostore/pgstore_i.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define EXIT_CORRUPT 1
#define EXIT_TROUBLE 2

static void usage(FILE *f)
{
	fprintf(f, "usage: cachefs-fsck [--quick] [--live] STORE...\n"
		   "       cachefs-fsck --reset STORE...\n"
		   "Checks cachefs SSD page stores (-o ssd_cache=STORE:SIZE) while no daemon uses them.\n"
		   "  --quick   check the superblock and logs, not every page's checksum\n"
		   "  --live    check a store a running daemon holds (pages being rewritten may show as corrupt)\n"
		   "  --reset   erase the store's superblock: the next mount formats it (cached pages are lost)\n"
		   "Exit status: 0 clean, 1 corruption found, 2 usage error or unreadable store.\n");
}

struct part_scan {
	struct pgs_rec *live;     /* by slot; type PUT when live */
	uint64_t nslots;
};

static void scan_put(void *arg, const struct pgs_rec *r)
{
	struct part_scan *s = arg;

	s->live[r->slot] = *r;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int reset_store(const char *path)
{
	void *zero;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "cachefs-fsck: %s: %s\n", path, strerror(errno));
		return EXIT_TROUBLE;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "cachefs-fsck: %s is in use by a running cachefs; unmount it first\n", path);
		close(fd);
		return EXIT_TROUBLE;
	}
	zero = calloc(1, PGS_BLOCK);
	if (!zero || pwrite(fd, zero, PGS_BLOCK, 0) != PGS_BLOCK || fdatasync(fd) < 0) {
		fprintf(stderr, "cachefs-fsck: %s: erasing the superblock: %s\n", path, strerror(errno));
		free(zero);
		close(fd);
		return EXIT_TROUBLE;
	}
	free(zero);
	close(fd);
	printf("%s: reset; the next mount starts it empty\n", path);
	return 0;
}

static int check_store(const char *path, bool quick, bool live)
{
	struct pgs_super *sb = NULL;
	struct part_scan scan = { 0 };
	uint64_t pages = 0, pinned = 0, bytes = 0, corrupt = 0, bad_recs = 0, nfiles = 0, nids = 0;
	uint64_t *ids = NULL;
	char *buf = NULL, why[160], a[32];
	int fd, rc = EXIT_TROUBLE;

	fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "cachefs-fsck: %s: %s\n", path, strerror(errno));
		return EXIT_TROUBLE;
	}
	if (!live && flock(fd, LOCK_SH | LOCK_NB) < 0) {
		fprintf(stderr, "cachefs-fsck: %s is in use by a running cachefs; unmount it first "
			"(or pass --live)\n", path);
		goto out;
	}
	if (posix_memalign((void **)&sb, PGS_BLOCK, PGS_BLOCK) ||
	    pread(fd, sb, PGS_BLOCK, 0) != PGS_BLOCK) {
		fprintf(stderr, "cachefs-fsck: %s: reading the superblock: %s\n", path, strerror(errno));
		goto out;
	}
	if (pgs_super_check(sb, 0, why, sizeof(why))) {
		printf("%s: superblock: %s\n", path, why);
		rc = EXIT_CORRUPT;
		goto out;
	}
	printf("%s: layout %u, %s pages, %u shards x %llu slots\n", path, sb->layout,
	       fmt_size(sb->page_size, a, sizeof(a)), sb->nparts,
	       (unsigned long long)sb->slots_per_part);
	scan.nslots = sb->slots_per_part;
	scan.live = malloc(scan.nslots * sizeof(*scan.live));
	ids = malloc(scan.nslots * sb->nparts * sizeof(*ids));
	if (!scan.live || !ids || posix_memalign((void **)&buf, PGS_BLOCK, sb->page_size)) {
		fprintf(stderr, "cachefs-fsck: out of memory\n");
		goto out;
	}
	for (uint32_t p = 0; p < sb->nparts; p++) {
		struct pgs_replay r;
		int err;

		memset(scan.live, 0, scan.nslots * sizeof(*scan.live));
		err = pgs_replay_part(fd, sb, p, scan_put, &scan, &r);
		if (err) {
			fprintf(stderr, "cachefs-fsck: %s: reading the log of shard %u: %s\n", path, p,
				strerror(-err));
			goto out;
		}
		if (r.bad)
			printf("%s: shard %u: log ends in %llu torn or corrupt records after %llu good ones\n",
			       path, p, (unsigned long long)r.bad, (unsigned long long)r.recs);
		bad_recs += r.bad;
		for (uint64_t s = 0; s < scan.nslots; s++) {
			const struct pgs_rec *rec = &scan.live[s];
			if (rec->type != PGS_REC_PUT)
				continue;
			if (!quick) {
				size_t len = (rec->len + PGS_BLOCK - 1) & ~(size_t)(PGS_BLOCK - 1);
				off_t at = (off_t)(sb->data_off + ((uint64_t)p * sb->slots_per_part + s) * sb->page_size);
				if (pread(fd, buf, len, at) != (ssize_t)len ||
				    pgs_data_csum(buf, rec->len, sb->uuid) != rec->data_csum) {
					printf("%s: shard %u slot %llu: page %llu of file %016llx fails its checksum\n",
					       path, p, (unsigned long long)s, (unsigned long long)rec->index,
					       (unsigned long long)rec->file);
					corrupt++;
					continue;
				}
			}
			pages++;
			pinned += !!(rec->flags & PGS_REC_HELD);
			bytes += rec->len;
			ids[nids++] = rec->file;
		}
	}
	qsort(ids, nids, sizeof(*ids), cmp_u64);
	for (uint64_t i = 0; i < nids; i++)
		nfiles += !i || ids[i] != ids[i - 1];
	printf("%s: %llu pages, %llu bytes, %llu files, %llu corrupt pages, %llu bad log records, "
	       "%llu pinned pages%s\n",
	       path, (unsigned long long)pages, (unsigned long long)bytes, (unsigned long long)nfiles,
	       (unsigned long long)corrupt, (unsigned long long)bad_recs, (unsigned long long)pinned,
	       quick ? " (pages not read: --quick)" : "");
	rc = corrupt || bad_recs ? EXIT_CORRUPT : 0;
out:
	free(buf);
	free(ids);
	free(scan.live);
	free(sb);
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "live", no_argument, NULL, 'l' },
		{ "reset", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool quick = false, live = false, reset = false;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'q': quick = true; break;
		case 'l': live = true; break;
		case 'r': reset = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_TROUBLE;
		}
	}
	if (optind == argc) {
		usage(stderr);
		return EXIT_TROUBLE;
	}
	for (int i = optind; i < argc; i++) {
		int r = reset ? reset_store(argv[i]) : check_store(argv[i], quick, live);
		rc = MAX(rc, r);
	}
	return rc;
}
