/*
 * cachefs-bench: dd-style throughput and latency on any path, so one tool
 * measures local disk, cachefs, s3fs or rclone alike.
 */
#include "config.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum mode { M_READ, M_WRITE, M_RANDREAD, M_TREE };

struct opts {
	enum mode mode;
	const char *path;
	uint64_t bs, size, ios;
	unsigned threads, files, procs, epochs;
	uint64_t seed;
	double runtime;
	bool direct, drop, json, fsync, quiet;
};

struct lat {
	uint64_t *v;
	size_t n, cap;
};

struct worker {
	pthread_t t;
	struct job *job;
	unsigned id;
	uint64_t bytes, ios;
	struct lat lat;
	int err;
	char errpath[512];
};

struct job {
	struct opts *o;
	char **files;          /* read/randread over a tree; write: names to create */
	uint64_t *sizes;
	size_t nfiles;
	atomic_size_t next;    /* next file index a worker takes */
	uint64_t deadline;
	uint64_t ios_each;
};

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	fprintf(stderr, "cachefs-bench: ");
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void lat_add(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4096;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			abort();
	}
	l->v[l->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void *xalloc_aligned(size_t n)
{
	void *p;
	if (posix_memalign(&p, 4096, n))
		abort();
	memset(p, 0x5a, n);
	return p;
}

static void add_file(struct job *j, const char *path, uint64_t size)
{
	if ((j->nfiles & (j->nfiles - 1)) == 0 || !j->nfiles) {
		size_t cap = j->nfiles ? j->nfiles * 2 : 1;
		j->files = realloc(j->files, cap * sizeof(*j->files));
		j->sizes = realloc(j->sizes, cap * sizeof(*j->sizes));
		if (!j->files || !j->sizes)
			abort();
	}
	j->files[j->nfiles] = strdup(path);
	j->sizes[j->nfiles++] = size;
}

static void walk(struct job *j, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d) {
		fprintf(stderr, "cachefs-bench: %s: %s\n", dir, strerror(errno));
		exit(1);
	}
	while ((de = readdir(d))) {
		char p[4096];
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (stat(p, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			walk(j, p);
		else if (S_ISREG(st.st_mode))
			add_file(j, p, (uint64_t)st.st_size);
	}
	closedir(d);
}

static int open_flags(const struct opts *o, int base)
{
	return base | O_CLOEXEC | (o->direct ? O_DIRECT : 0);
}

static void fail(struct worker *w, const char *path, int err)
{
	if (!w->err) {
		w->err = err;
		snprintf(w->errpath, sizeof(w->errpath), "%s", path);
	}
}

/* Sequential read of [start, end) of one file, in bs blocks. */
static void read_range(struct worker *w, const char *path, uint64_t start, uint64_t end, char *buf)
{
	const struct opts *o = w->job->o;
	int fd = open(path, open_flags(o, O_RDONLY));

	if (fd < 0) {
		fail(w, path, errno);
		return;
	}
	for (uint64_t off = start; off < end;) {
		uint64_t t0 = now_ns();
		ssize_t n = pread(fd, buf, o->bs, (off_t)off);
		if (n < 0) {
			fail(w, path, errno);
			break;
		}
		lat_add(&w->lat, now_ns() - t0);
		w->ios++;
		if (n == 0)
			break;
		w->bytes += (uint64_t)n;
		off += (uint64_t)n;
	}
	close(fd);
}

static void write_file(struct worker *w, const char *path, char *buf)
{
	const struct opts *o = w->job->o;
	int fd = open(path, open_flags(o, O_WRONLY | O_CREAT | O_TRUNC), 0644);

	if (fd < 0) {
		fail(w, path, errno);
		return;
	}
	for (uint64_t off = 0; off < o->size;) {
		size_t len = (size_t)MIN(o->bs, o->size - off);
		uint64_t t0 = now_ns();
		ssize_t n = pwrite(fd, buf, len, (off_t)off);
		if (n <= 0) {
			fail(w, path, n < 0 ? errno : EIO);
			break;
		}
		lat_add(&w->lat, now_ns() - t0);
		w->ios++;
		w->bytes += (uint64_t)n;
		off += (uint64_t)n;
	}
	if (o->fsync && fsync(fd) < 0)
		fail(w, path, errno);
	if (close(fd) < 0)
		fail(w, path, errno);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void randread(struct worker *w, char *buf)
{
	struct job *j = w->job;
	const struct opts *o = j->o;
	uint64_t seed = 0x9e3779b97f4a7c15ULL * (w->id + 1);
	int *fds = calloc(j->nfiles, sizeof(int));

	for (size_t i = 0; i < j->nfiles; i++) {
		fds[i] = open(j->files[i], open_flags(o, O_RDONLY));
		if (fds[i] < 0) {
			fail(w, j->files[i], errno);
			goto out;
		}
	}
	for (uint64_t i = 0;; i++) {
		if (j->ios_each ? i >= j->ios_each : ((i & 63) == 0 && now_ns() >= j->deadline))
			break;
		size_t f = (size_t)(rnd(&seed) % j->nfiles);
		uint64_t blocks = j->sizes[f] / o->bs;
		if (!blocks)
			continue;
		uint64_t off = (rnd(&seed) % blocks) * o->bs;
		uint64_t t0 = now_ns();
		ssize_t n = pread(fds[f], buf, o->bs, (off_t)off);
		if (n < 0) {
			fail(w, j->files[f], errno);
			break;
		}
		lat_add(&w->lat, now_ns() - t0);
		w->ios++;
		w->bytes += (uint64_t)n;
	}
out:
	for (size_t i = 0; i < j->nfiles; i++)
		if (fds[i] > 0)
			close(fds[i]);
	free(fds);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct job *j = w->job;
	const struct opts *o = j->o;
	char *buf = xalloc_aligned(o->bs);
	size_t i;

	if (o->mode == M_RANDREAD) {
		randread(w, buf);
	} else if (j->nfiles == 1 && o->mode == M_READ) {
		/* One file, many threads: each reads its own contiguous slice. */
		uint64_t size = o->size ? MIN(o->size, j->sizes[0]) : j->sizes[0];
		uint64_t blocks = (size + o->bs - 1) / o->bs;
		uint64_t per = (blocks + o->threads - 1) / o->threads;
		uint64_t a = MIN(w->id * per * o->bs, size), b = MIN((w->id + 1) * per * o->bs, size);
		if (a < b)
			read_range(w, j->files[0], a, b, buf);
	} else {
		while ((i = atomic_fetch_add(&j->next, 1)) < j->nfiles) {
			if (o->mode == M_READ)
				read_range(w, j->files[i], 0, o->size ? o->size : j->sizes[i], buf);
			else
				write_file(w, j->files[i], buf);
		}
	}
	free(buf);
	return NULL;
}

/*
 * tree: what a data loader does to a dataset of small files. Each epoch
 * reads every file once, whole, in a fresh shuffled order, with N workers
 * (threads, or processes with --procs, like PyTorch's DataLoader workers)
 * taking the next file from a shared counter. All the workers share lives
 * in one MAP_SHARED mapping, so threads and processes run the same code.
 */
struct tree_shared {
	atomic_size_t next;
	atomic_uint_fast64_t bytes;
	atomic_int err;
	char errpath[512];
	uint64_t lat[];     /* open to close of the i-th file of the epoch, ns */
};

static void tree_fail(struct tree_shared *sh, const char *path, int err)
{
	int none = 0;

	if (atomic_compare_exchange_strong(&sh->err, &none, err))
		snprintf(sh->errpath, sizeof(sh->errpath), "%s", path);
}

static void tree_worker(const struct job *j, const size_t *order, struct tree_shared *sh)
{
	const struct opts *o = j->o;
	char *buf = xalloc_aligned(o->bs);
	size_t i;

	while (!atomic_load(&sh->err) && (i = atomic_fetch_add(&sh->next, 1)) < j->nfiles) {
		const char *path = j->files[order[i]];
		uint64_t t0 = now_ns(), bytes = 0;
		ssize_t n = 0;
		int fd = open(path, open_flags(o, O_RDONLY));

		if (fd < 0) {
			tree_fail(sh, path, errno);
			break;
		}
		while ((n = read(fd, buf, o->bs)) > 0)
			bytes += (uint64_t)n;
		if (n < 0)
			tree_fail(sh, path, errno);
		close(fd);
		sh->lat[i] = now_ns() - t0;
		atomic_fetch_add(&sh->bytes, bytes);
	}
	free(buf);
}

struct tree_thread {
	pthread_t t;
	const struct job *j;
	const size_t *order;
	struct tree_shared *sh;
};

static void *tree_thread_main(void *arg)
{
	struct tree_thread *t = arg;

	tree_worker(t->j, t->order, t->sh);
	return NULL;
}

/* One epoch with `workers` threads or processes; returns its seconds. */
static double tree_epoch(const struct job *j, const size_t *order, struct tree_shared *sh)
{
	const struct opts *o = j->o;
	unsigned workers = o->procs ? o->procs : o->threads;
	struct tree_thread *t = calloc(workers, sizeof(*t));
	pid_t *pids = calloc(workers, sizeof(*pids));
	uint64_t t0 = now_ns();

	if (!t || !pids)
		abort();
	for (unsigned i = 0; i < workers; i++) {
		if (o->procs) {
			pids[i] = fork();
			if (pids[i] < 0)
				die("fork: %s", strerror(errno));
			if (pids[i] == 0) {
				tree_worker(j, order, sh);
				_exit(0);
			}
		} else {
			t[i] = (struct tree_thread){ .j = j, .order = order, .sh = sh };
			if (pthread_create(&t[i].t, NULL, tree_thread_main, &t[i]))
				die("%s", "pthread_create failed");
		}
	}
	for (unsigned i = 0; i < workers; i++) {
		int status;
		if (!o->procs)
			pthread_join(t[i].t, NULL);
		else if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
			tree_fail(sh, "(worker process)", EIO);
	}
	free(t);
	free(pids);
	return (double)(now_ns() - t0) / 1e9;
}

static void shuffle(size_t *v, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;

	for (size_t i = 0; i < n; i++)
		v[i] = i;
	for (size_t i = n; i > 1; i--) {
		size_t k = (size_t)(rnd(&s) % i), x = v[i - 1];
		v[i - 1] = v[k];
		v[k] = x;
	}
}

static int run_tree(const struct job *j)
{
	const struct opts *o = j->o;
	size_t maplen = sizeof(struct tree_shared) + j->nfiles * sizeof(uint64_t);
	struct tree_shared *sh = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	size_t *order = malloc(j->nfiles * sizeof(*order));
	uint64_t *lat = malloc(j->nfiles * sizeof(*lat));
	unsigned workers = o->procs ? o->procs : o->threads;
	int err = 0;

	if (sh == MAP_FAILED || !order || !lat)
		die("%s", "out of memory");
	if (o->json)
		printf("{\"mode\":\"tree\",\"path\":\"%s\",\"files\":%zu,\"workers\":%u,\"processes\":%s,"
		       "\"bs\":%llu,\"direct\":%s,\"epochs\":[", o->path, j->nfiles, workers,
		       o->procs ? "true" : "false", (unsigned long long)o->bs, o->direct ? "true" : "false");
	for (unsigned e = 0; e < o->epochs && !err; e++) {
		shuffle(order, j->nfiles, o->seed + e);
		memset(sh, 0, maplen);
		double secs = tree_epoch(j, order, sh);
		uint64_t bytes = atomic_load(&sh->bytes);
		if ((err = atomic_load(&sh->err)))
			fprintf(stderr, "cachefs-bench: %s: %s\n", sh->errpath, strerror(err));
		memcpy(lat, sh->lat, j->nfiles * sizeof(*lat));
		qsort(lat, j->nfiles, sizeof(*lat), cmp_u64);
		double fps = (double)j->nfiles / secs, mbps = (double)bytes / 1e6 / secs;
		double p50 = (double)lat[j->nfiles / 2] / 1e3;
		double p99 = (double)lat[MIN(j->nfiles - 1, j->nfiles * 99 / 100)] / 1e3;
		if (o->json)
			printf("%s{\"epoch\":%u,\"seconds\":%.6f,\"bytes\":%llu,\"files_per_s\":%.0f,"
			       "\"mbps\":%.1f,\"file_lat_us\":{\"p50\":%.1f,\"p99\":%.1f}}", e ? "," : "",
			       e + 1, secs, (unsigned long long)bytes, fps, mbps, p50, p99);
		else
			printf("tree %s epoch %u: %zu files, %llu bytes in %.3f s: %.0f files/s, %.1f MB/s "
			       "(%u %s%s); per file p50 %.1f us, p99 %.1f us\n", o->path, e + 1, j->nfiles,
			       (unsigned long long)bytes, secs, fps, mbps, workers,
			       o->procs ? "process(es)" : "thread(s)", o->direct ? ", O_DIRECT" : "", p50, p99);
		fflush(stdout);
	}
	if (o->json)
		printf("],\"errors\":%d}\n", err ? 1 : 0);
	munmap(sh, maplen);
	free(order);
	free(lat);
	return err ? 1 : 0;
}

static void drop_caches(void)
{
	int fd;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0 || write(fd, "3", 1) != 1) {
		fprintf(stderr, "cachefs-bench: --drop-caches needs root (/proc/sys/vm/drop_caches: %s)\n",
			strerror(errno));
		exit(1);
	}
	close(fd);
}

static void plan_write(struct job *j, const struct opts *o)
{
	char p[4096];

	if (!o->files) {
		add_file(j, o->path, o->size);
		return;
	}
	/* A tree of 100 files per directory, like a sharded dataset. */
	if (mkdir(o->path, 0755) < 0 && errno != EEXIST)
		die("cannot create %s", o->path);
	for (unsigned i = 0; i < o->files; i++) {
		if (i % 100 == 0) {
			snprintf(p, sizeof(p), "%s/d%04u", o->path, i / 100);
			if (mkdir(p, 0755) < 0 && errno != EEXIST)
				die("cannot create %s", p);
		}
		snprintf(p, sizeof(p), "%s/d%04u/f%06u", o->path, i / 100, i);
		add_file(j, p, o->size);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cachefs-bench read|write|randread|tree PATH [options]\n"
		"\n"
		"  read PATH       sequential read of a file, or of every file under a directory\n"
		"  write PATH      sequential write of --size bytes to PATH; with --files N, a\n"
		"                  tree of N files of --size each under directory PATH\n"
		"  randread PATH   random --bs reads of a file, or of the files under a directory\n"
		"  tree PATH       data-loader epochs: every file under PATH read whole, in a new\n"
		"                  shuffled order each epoch; files/s and MB/s per epoch\n"
		"\n"
		"  --bs SIZE        block size [1M; randread 4K]\n"
		"  --size SIZE      write: bytes per file [1G]; read: read at most this much per file\n"
		"  --files N        write: number of files in the tree\n"
		"  --threads N      parallel readers or writers [1]\n"
		"  --procs N        tree: N worker processes instead of threads\n"
		"  --epochs K       tree: passes over the tree [2]\n"
		"  --seed S         tree: seed of the shuffle [1]\n"
		"  --direct         O_DIRECT (bypasses the kernel page cache)\n"
		"  --drop-caches    sync and drop the kernel caches first (root)\n"
		"  --runtime SECS   randread: run this long [10]\n"
		"  --ios N          randread: stop after N reads per thread instead\n"
		"  --fsync          write: fsync each file before closing it\n"
		"  --json           one JSON object instead of text\n");
}

static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "bs", required_argument, NULL, 'b' }, { "size", required_argument, NULL, 's' },
		{ "files", required_argument, NULL, 'n' }, { "threads", required_argument, NULL, 't' },
		{ "direct", no_argument, NULL, 'D' }, { "drop-caches", no_argument, NULL, 'C' },
		{ "runtime", required_argument, NULL, 'r' }, { "ios", required_argument, NULL, 'i' },
		{ "fsync", no_argument, NULL, 'F' }, { "json", no_argument, NULL, 'j' },
		{ "procs", required_argument, NULL, 'P' }, { "epochs", required_argument, NULL, 'E' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->threads = 1;
	o->runtime = 10;
	o->epochs = 2;
	o->seed = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'b': if (parse_size(optarg, &o->bs) || !o->bs) die("bad --bs '%s'", optarg); break;
		case 's': if (parse_size(optarg, &o->size)) die("bad --size '%s'", optarg); break;
		case 'n': if (parse_uint(optarg, 1, 10000000, &v)) die("bad --files '%s'", optarg); o->files = (unsigned)v; break;
		case 't': if (parse_uint(optarg, 1, 4096, &v)) die("bad --threads '%s'", optarg); o->threads = (unsigned)v; break;
		case 'D': o->direct = true; break;
		case 'C': o->drop = true; break;
		case 'r': if (parse_seconds(optarg, &o->runtime)) die("bad --runtime '%s'", optarg); break;
		case 'i': if (parse_uint(optarg, 1, UINT64_MAX, &o->ios)) die("bad --ios '%s'", optarg); break;
		case 'F': o->fsync = true; break;
		case 'P': if (parse_uint(optarg, 1, 1024, &v)) die("bad --procs '%s'", optarg); o->procs = (unsigned)v; break;
		case 'E': if (parse_uint(optarg, 1, 100000, &v)) die("bad --epochs '%s'", optarg); o->epochs = (unsigned)v; break;
		case 'S': if (parse_uint(optarg, 0, UINT64_MAX, &o->seed)) die("bad --seed '%s'", optarg); break;
		case 'j': o->json = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		exit(2);
	}
	if (!strcmp(argv[optind], "read"))
		o->mode = M_READ;
	else if (!strcmp(argv[optind], "write"))
		o->mode = M_WRITE;
	else if (!strcmp(argv[optind], "randread"))
		o->mode = M_RANDREAD;
	else if (!strcmp(argv[optind], "tree"))
		o->mode = M_TREE;
	else
		die("unknown mode '%s' (read, write, randread or tree)", argv[optind]);
	o->path = argv[optind + 1];
	if (!o->bs)
		o->bs = o->mode == M_RANDREAD ? 4096 : 1 << 20;
	if (o->mode == M_WRITE && !o->size)
		o->size = 1ULL << 30;
}

static const char *mode_name[] = { "read", "write", "randread", "tree" };

int main(int argc, char **argv)
{
	struct opts o;
	struct job j = { 0 };
	struct stat st;
	struct worker *w;
	uint64_t bytes = 0, ios = 0, t0, t1;
	struct lat all = { 0 };
	int err = 0;

	parse(argc, argv, &o);
	j.o = &o;
	if (o.mode == M_WRITE) {
		plan_write(&j, &o);
	} else {
		if (stat(o.path, &st) < 0)
			die("cannot stat '%s'", o.path);
		if (S_ISDIR(st.st_mode))
			walk(&j, o.path);
		else
			add_file(&j, o.path, (uint64_t)st.st_size);
		if (!j.nfiles)
			die("no files under '%s'", o.path);
	}
	if (o.drop)
		drop_caches();
	if (o.mode == M_TREE) {
		err = run_tree(&j);
		goto out;
	}
	w = calloc(o.threads, sizeof(*w));
	if (o.ios)
		j.ios_each = o.ios;
	t0 = now_ns();
	j.deadline = t0 + (uint64_t)(o.runtime * 1e9);
	for (unsigned i = 0; i < o.threads; i++) {
		w[i].job = &j;
		w[i].id = i;
		if (pthread_create(&w[i].t, NULL, worker_main, &w[i]))
			die("%s", "pthread_create failed");
	}
	for (unsigned i = 0; i < o.threads; i++) {
		pthread_join(w[i].t, NULL);
		bytes += w[i].bytes;
		ios += w[i].ios;
		for (size_t k = 0; k < w[i].lat.n; k++)
			lat_add(&all, w[i].lat.v[k]);
		if (w[i].err && !err) {
			err = w[i].err;
			fprintf(stderr, "cachefs-bench: %s: %s\n", w[i].errpath, strerror(err));
		}
	}
	t1 = now_ns();
	double secs = (double)(t1 - t0) / 1e9;
	double mbps = (double)bytes / 1e6 / secs, iops = (double)ios / secs;
	double p50 = 0, p99 = 0, p999 = 0;
	if (all.n) {
		qsort(all.v, all.n, sizeof(*all.v), cmp_u64);
		p50 = (double)all.v[all.n / 2] / 1e3;
		p99 = (double)all.v[MIN(all.n - 1, all.n * 99 / 100)] / 1e3;
		p999 = (double)all.v[MIN(all.n - 1, all.n * 999 / 1000)] / 1e3;
	}
	if (o.json)
		printf("{\"mode\":\"%s\",\"path\":\"%s\",\"files\":%zu,\"threads\":%u,\"bs\":%llu,"
		       "\"direct\":%s,\"bytes\":%llu,\"seconds\":%.6f,\"mbps\":%.1f,\"iops\":%.0f,"
		       "\"lat_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f},\"errors\":%d}\n",
		       mode_name[o.mode], o.path, j.nfiles, o.threads, (unsigned long long)o.bs,
		       o.direct ? "true" : "false", (unsigned long long)bytes, secs, mbps, iops,
		       p50, p99, p999, err ? 1 : 0);
	else
		printf("%s %s: %llu bytes in %zu file(s), %.3f s: %.1f MB/s, %.0f IOPS "
		       "(bs %llu, %u thread(s)%s); latency p50 %.1f us, p99 %.1f us, p99.9 %.1f us\n",
		       mode_name[o.mode], o.path, (unsigned long long)bytes, j.nfiles, secs, mbps, iops,
		       (unsigned long long)o.bs, o.threads, o.direct ? ", O_DIRECT" : "", p50, p99, p999);
	for (unsigned i = 0; i < o.threads; i++)
		free(w[i].lat.v);
	free(all.v);
	free(w);
out:
	for (size_t i = 0; i < j.nfiles; i++)
		free(j.files[i]);
	free(j.files);
	free(j.sizes);
	return err ? 1 : 0;
}
