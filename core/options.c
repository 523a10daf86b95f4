#include "config.h"
#include "core/options.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* S3's largest part, and the largest object one CopyObject copies. */
#define S3_5G (5ULL << 30)

enum opt_type {
	OPT_BOOL,     /* "name" or name=0|1|yes|no|true|false */
	OPT_UINT,
	OPT_SIZE,     /* bytes with K/M/G/T suffixes */
	OPT_SECONDS,
	OPT_LOGLEVEL,
	OPT_INTAKE,   /* shards|threads */
	OPT_SSD,      /* PATH:SIZE, repeatable */
	OPT_ADMIT,    /* always|second_touch */
	OPT_STRING,   /* copied into a char array of `max` bytes */
	OPT_LIST,     /* a string of comma-separated addresses: in -o, bare HOST:PORT or URL tokens after it continue it */
	OPT_ADDRESSING, /* auto|path|virtual */
	OPT_LOCALMETA,  /* auto|threads|shards */
	OPT_TRISTATE, /* auto, or what OPT_BOOL takes */
	OPT_PREFAULT, /* a size, all or off */
	OPT_NOT,      /* a bool set to the opposite of what is given */
	OPT_ID,       /* a uid or gid into an int64_t (-1: unset) */
	OPT_OCTAL,    /* mode bits, such as 022 */
	OPT_PASS,     /* kernel mount flag, passed on as written */
	OPT_PASSVAL,  /* kernel mount option with a value, passed on */
};

struct opt_def {
	const char *name;
	enum opt_type type;
	size_t off;
	const char *def;     /* default, as documented */
	const char *help;
	uint64_t min, max;   /* OPT_UINT bounds */
	bool mount;          /* may differ per [mount] section of a config file */
};

#define F(field) offsetof(struct cachefs_config, field)
#define STR(field) OPT_STRING, F(field)
#define SZ(field) 0, sizeof(((struct cachefs_config *)0)->field)
static const struct opt_def opt_table[] = {
	{ "shards", OPT_UINT, F(run.shards), "online CPUs, at most one per 4 pages of ram_cache", "shard threads, each pinned with its own io_uring", 1, 1024, false },
	{ "spin_us", OPT_UINT, F(run.spin_us), "0", "microseconds a shard polls for work before sleeping", 0, 100000, false },
	{ "log_level", OPT_LOGLEVEL, F(run.log_level), "info", "error, warn, info or debug", 0, 0, false },
	{ "page_size", OPT_SIZE, F(cache.page_size), "1M", "cache page size, a power of two from 4K to 16M", 0, 0, false },
	{ "ram_cache", OPT_SIZE, F(cache.ram_cache), "1/8 of RAM", "RAM tier capacity, a hard cap", 0, 0, false },
	{ "ram_prefault", OPT_PREFAULT, F(cache.ram_prefault), "256M", "RAM tier memory an idle-priority thread faults in ahead of use, so cold reads do not wait for the kernel to zero and map fresh pages (SIZE ahead; all: the whole tier, from the start; off)", 0, 0, false },
	{ "read_ahead", OPT_SIZE, F(fuse.read_ahead), "4M", "kernel read-ahead of the mount (bdi read_ahead_kb; root only)", 0, 0, false },
	{ "max_readahead", OPT_SIZE, F(cache.max_readahead), "64M", "largest daemon read-ahead window of one sequential stream", 0, 0, false },
	{ "readahead_budget", OPT_SIZE, F(cache.readahead_budget), "1/4 of ram_cache, at most 1G", "read-ahead bytes in flight across all open files", 0, 0, false },
	{ "ssd_cache", OPT_SSD, 0, "off", "SSD tier: PATH:SIZE[,PATH2:SIZE2] of store files (created and fallocated) or block devices (PATH alone: the whole device)", 0, 0, false },
	{ "ssd_admit", OPT_ADMIT, F(cache.ssd_admit), "always", "which UFS pages go to the SSD: always, or second_touch (a page missed twice; one scan of a huge set does not flush the store)", 0, 0, false },
	{ "sqpoll", OPT_BOOL, F(run.sqpoll), "off", "a kernel thread per shard polls its io_uring submissions (costs a core each)", 0, 0, false },
	{ "endpoint", STR(src.endpoint), "AWS for the region", "S3 endpoint URL, such as http://127.0.0.1:9000 or https://storage.example.com", SZ(src.endpoint), true },
	{ "region", STR(src.region), "AWS_REGION, the profile's, or us-east-1", "S3 region signed into requests", SZ(src.region), true },
	{ "access_key", STR(src.access_key), "", "S3 access key id (prefer passwd_file, the environment or ~/.aws/credentials)", SZ(src.access_key), true },
	{ "secret_key", STR(src.secret_key), "", "S3 secret key; hidden from ps once read, but prefer passwd_file", SZ(src.secret_key), true },
	{ "session_token", STR(src.session_token), "", "S3 session token of temporary credentials", SZ(src.session_token), true },
	{ "profile", STR(src.profile), "AWS_PROFILE or default", "profile read from ~/.aws/credentials and ~/.aws/config", SZ(src.profile), true },
	{ "passwd_file", STR(src.passwd_file), "", "file of ACCESS:SECRET or BUCKET:ACCESS:SECRET lines, mode 0600 (as s3fs)", SZ(src.passwd_file), true },
	{ "ca_bundle", STR(src.ca_bundle), "AWS_CA_BUNDLE or the system store", "PEM file of CAs trusted for HTTPS", SZ(src.ca_bundle), true },
	{ "anonymous", OPT_BOOL, F(src.anonymous), "off", "unsigned requests, for public buckets", 0, 0, true },
	{ "s3_addressing", OPT_ADDRESSING, F(src.s3_addressing), "auto", "path (endpoint/bucket/key), virtual (bucket.endpoint/key), or auto: virtual on AWS, path elsewhere", 0, 0, true },
	{ "s3_max_connections", OPT_UINT, F(src.s3_max_connections), "16", "HTTP connections per shard to the object store", 1, 1024, true },
	{ "s3_list_max_keys", OPT_UINT, F(src.s3_list_max_keys), "1000", "keys per ListObjectsV2 page (lower it to test pagination)", 1, 1000, true },
	{ "retries", OPT_UINT, F(src.retries), "5", "retries of a failed request (5xx, 429, resets, timeouts), with exponential backoff and jitter", 0, 100, true },
	{ "timeout", OPT_SECONDS, F(src.timeout), "30", "seconds one object store request may take, retries included; then the reader gets EIO", 0, 0, true },
	{ "dir_cache_ttl", OPT_SECONDS, F(src.dir_cache_ttl), "60", "seconds a listing or a stat of the object store is reused", 0, 0, true },
	{ "stale_if_error", OPT_SECONDS, F(meta.stale_if_error), "86400", "seconds a listing or stat may be served from the cache while the source fails (0: never)", 0, 0, false },
	{ "meta_cache", OPT_UINT, F(meta.meta_cache), "2000000", "names the metadata cache keeps beyond those the kernel holds (about 200 bytes each)", 1000, 1000000000, false },
	{ "meta_threads", OPT_UINT, F(meta.meta_threads), "4", "threads for the metadata calls of sources whose file system may hang them (NFS, SMB, FUSE...: see local_meta)", 1, 256, false },
	{ "local_meta", OPT_LOCALMETA, F(src.local_meta), "auto", "where a local source's metadata calls run: auto (on the metadata threads for network file systems such as NFS, on the shards for local disks), threads, or shards", 0, 0, true },
	{ "manifest", STR(src.manifest), "", "http(s) sources: the list of files, a local /PATH or a path relative to the source URL; lines of PATH[<TAB>SIZE[<TAB>ETAG]]", SZ(src.manifest), true },
	{ "uid", OPT_ID, F(src.uid), "the daemon's", "object stores: owner shown for objects without x-amz-meta-uid", 0, 4294967294u, true },
	{ "gid", OPT_ID, F(src.gid), "the daemon's", "object stores: group shown for objects without x-amz-meta-gid", 0, 4294967294u, true },
	{ "umask", OPT_OCTAL, F(src.umask), "022", "object stores: mode bits taken from objects and prefixes without x-amz-meta-mode (0644 and 0755 by default; 0444 and 0555 on ro mounts)", 0, 0777, true },
	{ "staging_dir", STR(src.staging_dir), "DIR/cachefs-staging next to the first ssd_cache store file, else /var/tmp/cachefs-staging (-UID for other users)", "object stores: where written files are kept until they are uploaded, and where a failed or interrupted upload is kept (recovery/); a later mount of the same bucket finishes what it finds there", SZ(src.staging_dir), true },
	{ "staging_max", OPT_SIZE, F(src.staging_max), "0 (until the disk is full)", "object stores: most bytes of written files kept at once; a write past it gets ENOSPC", 0, 0, true },
	{ "write_part_size", OPT_SIZE, F(src.write_part_size), "8M", "object stores: files larger than this are uploaded in parts of this size (5M to 5G)", 0, 0, true },
	{ "write_buffer", OPT_SIZE, F(src.write_buffer), "256M", "object stores: memory for parts being uploaded, across all files; an upload over it waits for a part to finish", 0, 0, true },
	{ "copy_max", OPT_SIZE, F(src.copy_max), "5G", "object stores: largest object a rename or chmod copies on the server (CopyObject); a larger one is copied through the daemon, ranged GETs into a multipart upload", 0, 0, true },
	{ "kernel_cache", OPT_BOOL, F(fuse.kernel_cache), "off", "keep file pages in the kernel page cache across opens", 0, 0, false },
	{ "auto_cache", OPT_BOOL, F(fuse.auto_cache), "off", "like kernel_cache, but drop them when size or mtime changed", 0, 0, false },
	{ "no_open", OPT_TRISTATE, F(fuse.no_open), "auto: on with kernel_cache on a read-only mount", "the kernel opens and closes files without asking the daemon (one ENOSYS to its first OPEN): a small file in the kernel's cache then costs no round trip. Readers of a file share one handle (one version; read-ahead per stream). Needs kernel_cache and ro (the kernel would not tell the daemon when a written file is closed)", 0, 0, false },
	{ "splice", OPT_BOOL, F(fuse.splice), "off", "send replies through a pipe (vmsplice + splice) instead of writev", 0, 0, false },
	{ "attr_timeout", OPT_SECONDS, F(fuse.attr_timeout), "60", "seconds the kernel caches attributes", 0, 0, false },
	{ "entry_timeout", OPT_SECONDS, F(fuse.entry_timeout), "60", "seconds the kernel caches name lookups", 0, 0, false },
	{ "negative_timeout", OPT_SECONDS, F(fuse.negative_timeout), "10", "seconds the kernel caches a failed lookup", 0, 0, false },
	{ "max_background", OPT_UINT, F(fuse.max_background), "128", "async requests (read-ahead) the kernel keeps in flight", 1, 65535, false },
	{ "congestion_threshold", OPT_UINT, F(fuse.congestion_threshold), "3/4 of max_background", "in-flight async requests at which the kernel slows writers", 1, 65535, false },
	{ "intake", OPT_INTAKE, F(fuse.intake), "shards", "who reads /dev/fuse: the shard loops, or libfuse worker threads", 0, 0, false },
	{ "max_threads", OPT_UINT, F(fuse.max_threads), "16", "intake=threads: most libfuse worker threads", 1, 1024, false },
	{ "max_idle_threads", OPT_UINT, F(fuse.max_idle_threads), "max_threads", "intake=threads: idle workers kept (fewer makes libfuse create and destroy threads under bursty load)", 1, 1024, false },
	{ "config", STR(config), "", "INI file of options and [mount /PATH] sections (or give it as SOURCE)", SZ(config), false },
	{ "ctl_socket", STR(ctl.ctl_socket), "/run/cachefs/MOUNT.sock", "Unix socket of cachefsctl; MOUNT is the mount point escaped as systemd-escape --path does (non-root: $XDG_RUNTIME_DIR/cachefs/ or /tmp/cachefs-UID/)", SZ(ctl.ctl_socket), false },
	{ "ctl_group", STR(ctl.ctl_group), "owner only", "group allowed to use the control socket (mode 0660 instead of 0600)", SZ(ctl.ctl_group), false },
	{ "metrics", STR(ctl.metrics), "off", "serve Prometheus metrics at http://ADDR:PORT/metrics (127.0.0.1:9464; :PORT listens on every address)", SZ(ctl.metrics), false },
	{ "serve", STR(cluster.serve), "off", "serve this node's cache to cluster peers and the Python client at http://ADDR:PORT/v1/ (an address the other nodes reach; nothing listens by default); needs cluster_token_file", SZ(cluster.serve), false },
	{ "cluster_token_file", STR(cluster.token_file), "", "file holding the cluster's shared token (one line, mode 0600 or stricter): page server requests without it get 401", SZ(cluster.token_file), false },
	{ "etcd", OPT_LIST, F(cluster.etcd), "off", "etcd endpoints URL[,URL...] (http://127.0.0.1:2379) where nodes of `cluster` register and find each other", SZ(cluster.etcd), false },
	{ "members", OPT_LIST, F(cluster.members), "", "a fixed cluster without etcd: every member's serve address, HOST:PORT[,HOST:PORT...] (this node's included); the same list on every node", SZ(cluster.members), false },
	{ "cluster", STR(cluster.name), "default", "name of the cluster in etcd: nodes with the same name share their caches", SZ(cluster.name), false },
	{ "cluster_ttl", OPT_SECONDS, F(cluster.ttl), "5", "seconds a node stays a member after its last keep-alive to etcd (a killed node's stripes move after this)", 0, 0, false },
	{ "peer_timeout", OPT_SECONDS, F(cluster.peer_timeout), "0.3", "seconds a read waits for the page's owner node before reading from the source itself", 0, 0, false },
	{ "max_read", OPT_SIZE, F(fuse.max_read), "1M", "largest read request the kernel sends", 0, 0, false },
	{ "allow_other", OPT_PASS, 0, "off", "let other users access the mount", 0, 0, false },
	{ "default_permissions", OPT_PASS, 0, "off", "kernel checks permissions from the file modes", 0, 0, false },
	{ "ro", OPT_BOOL, F(src.read_only), "off (on for http sources)", "read-only mount: changes answer EROFS, symlinks of a local source read as what they point to, and kernel_cache turns no_open on", 0, 0, true },
	{ "rw", OPT_NOT, F(src.read_only), "on", "writable mount (the default), for fstab", 0, 0, true },
	{ "fsname", OPT_PASSVAL, 0, "SOURCE", "file system name shown in mount tables", 0, 0, false },
	{ "subtype", OPT_PASSVAL, 0, "cachefs", "subtype shown as fuse.SUBTYPE", 0, 0, false },
	{ "dev", OPT_PASS, 0, "", "fstab flag, passed to the kernel", 0, 0, false },
	{ "nodev", OPT_PASS, 0, "", "fstab flag, passed to the kernel", 0, 0, false },
	{ "suid", OPT_PASS, 0, "", "fstab flag, passed to the kernel", 0, 0, false },
	{ "nosuid", OPT_PASS, 0, "", "fstab flag, passed to the kernel", 0, 0, false },
	{ "exec", OPT_PASS, 0, "", "fstab flag, passed to the kernel", 0, 0, false },
	{ "noexec", OPT_PASS, 0, "", "fstab flag, passed to the kernel", 0, 0, false },
	{ "atime", OPT_PASS, 0, "", "fstab flag, passed to the kernel", 0, 0, false },
	{ "noatime", OPT_PASS, 0, "", "fstab flag, passed to the kernel", 0, 0, false },
	{ "_netdev", OPT_PASS, 0, "", "fstab flag for the init system; ignored", 0, 0, false },
	{ "nofail", OPT_PASS, 0, "", "fstab flag for the init system; ignored", 0, 0, false },
};
#undef F
#undef STR
#undef SZ

void config_defaults(struct cachefs_config *c)
{
	memset(c, 0, sizeof(*c));
	c->run.log_level = LOG_LVL_INFO;
	c->run.spin_us = 0;
	c->cache.page_size = 1 << 20;
	c->fuse.read_ahead = 4 << 20;
	c->cache.max_readahead = 64 << 20;
	c->cache.ram_prefault = 256 << 20;
	c->fuse.attr_timeout = 60;
	c->fuse.entry_timeout = 60;
	c->fuse.negative_timeout = 10;
	c->fuse.max_background = 128;
	c->fuse.max_threads = 16;
	c->fuse.max_idle_threads = 0;   /* 0: as many as max_threads */
	c->fuse.max_read = 1 << 20;
	c->src.s3_max_connections = 16;
	c->src.s3_list_max_keys = 1000;
	c->src.retries = 5;
	c->src.uid = c->src.gid = -1;
	c->src.umask = 022;
	c->src.write_part_size = 8 << 20;
	c->src.write_buffer = 256 << 20;
	c->src.copy_max = S3_5G;
	c->src.timeout = 30;
	c->src.dir_cache_ttl = 60;
	c->meta.stale_if_error = 86400;
	c->meta.meta_cache = 2000000;
	c->meta.meta_threads = 4;
	snprintf(c->cluster.name, sizeof(c->cluster.name), "default");
	c->cluster.ttl = 5;
	c->cluster.peer_timeout = 0.3;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };

	if (!v) {
		*out = true;
		return 0;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcmp(v, yes[i])) { *out = true; return 0; }
		if (!strcmp(v, no[i])) { *out = false; return 0; }
	}
	return -EINVAL;
}

static void pass_on(struct cachefs_config *c, const char *opt)
{
	size_t len = strlen(c->fuse.kernel_opts);

	if (!strcmp(opt, "_netdev") || !strcmp(opt, "nofail") || !strcmp(opt, "rw"))
		return;
	snprintf(c->fuse.kernel_opts + len, sizeof(c->fuse.kernel_opts) - len, "%s%s", len ? "," : "", opt);
}

/* "PATH:SIZE", or "PATH" for a whole block device. */
static int add_ssd(struct cachefs_config *c, const char *val, char *err, size_t errlen)
{
	struct ssd_spec *sp = &c->cache.ssd[c->cache.nssd];
	const char *colon = strrchr(val, ':');
	size_t plen = colon ? (size_t)(colon - val) : strlen(val);

	if (c->cache.nssd == CONFIG_MAX_SSD) {
		snprintf(err, errlen, "option 'ssd_cache': at most %d store files", CONFIG_MAX_SSD);
		return -EINVAL;
	}
	if (!plen || plen >= sizeof(sp->path) || val[0] != '/') {
		snprintf(err, errlen, "invalid value '%s' for option 'ssd_cache' (expected /ABSOLUTE/PATH:SIZE, "
			 "such as /nvme/cachefs.store:100G)", val);
		return -EINVAL;
	}
	sp->size = 0;
	if (colon && (parse_size(colon + 1, &sp->size) || !sp->size)) {
		snprintf(err, errlen, "invalid size '%s' in option 'ssd_cache=%s' (expected a size such as 100G)",
			 colon + 1, val);
		return -EINVAL;
	}
	memcpy(sp->path, val, plen);
	sp->path[plen] = '\0';
	c->cache.nssd++;
	return 0;
}

static int too_long(const struct opt_def *d, char *err, size_t errlen)
{
	snprintf(err, errlen, "value of option '%s' is too long (at most %llu bytes)", d->name,
		 (unsigned long long)d->max - 1);
	return -EINVAL;
}

static int apply(struct cachefs_config *c, const struct opt_def *d, const char *opt,
		 const char *val, char *err, size_t errlen)
{
	void *field = (char *)c + d->off;
	const char *expect = NULL;
	uint64_t u;
	double sec;
	int lvl;

	if (d->type != OPT_BOOL && d->type != OPT_NOT && d->type != OPT_TRISTATE && d->type != OPT_PASS && !val) {
		snprintf(err, errlen, "option '%s' needs a value (%s=...)", d->name, d->name);
		return -EINVAL;
	}
	if (d->type == OPT_PASS && val) {
		/* "allow_other = yes" in a config file. */
		bool on;
		if (parse_bool(val, &on)) {
			snprintf(err, errlen, "option '%s' takes no value (or yes/no)", d->name);
			return -EINVAL;
		}
		if (on)
			pass_on(c, d->name);
		return 0;
	}
	switch (d->type) {
	case OPT_BOOL:
		if (parse_bool(val, field))
			expect = "on/off, yes/no, 1/0 or nothing";
		break;
	case OPT_NOT:
		if (parse_bool(val, field))
			expect = "on/off, yes/no, 1/0 or nothing";
		else
			*(bool *)field = !*(bool *)field;
		break;
	case OPT_UINT:
		if (parse_uint(val, d->min, d->max, &u)) {
			snprintf(err, errlen, "invalid value '%s' for option '%s' (expected an integer from %llu to %llu)",
				 val, d->name, (unsigned long long)d->min, (unsigned long long)d->max);
			return -EINVAL;
		}
		*(unsigned *)field = (unsigned)u;
		break;
	case OPT_ID:
		if (parse_uint(val, d->min, d->max, &u)) {
			snprintf(err, errlen, "invalid value '%s' for option '%s' (expected a numeric id)", val, d->name);
			return -EINVAL;
		}
		*(int64_t *)field = (int64_t)u;
		break;
	case OPT_OCTAL: {
		char *end;
		errno = 0;
		unsigned long m = strtoul(val, &end, 8);
		if (errno || !*val || *end || m > d->max)
			expect = "octal mode bits, such as 022";
		else
			*(unsigned *)field = (unsigned)m;
		break;
	}
	case OPT_SIZE:
		if (parse_size(val, field))
			expect = "a size such as 4096, 512K, 1M or 8G";
		break;
	case OPT_PREFAULT:
		if (!strcmp(val, "all"))
			*(uint64_t *)field = UINT64_MAX;
		else if (!strcmp(val, "off"))
			*(uint64_t *)field = 0;
		else if (parse_size(val, field))
			expect = "a size such as 256M, all, or off";
		break;
	case OPT_SECONDS:
		if (parse_seconds(val, &sec))
			expect = "seconds, such as 1 or 0.5";
		else
			*(double *)field = sec;
		break;
	case OPT_INTAKE:
		if (!strcmp(val, "shards"))
			*(int *)field = INTAKE_SHARDS;
		else if (!strcmp(val, "threads"))
			*(int *)field = INTAKE_THREADS;
		else
			expect = "shards or threads";
		break;
	case OPT_LOGLEVEL:
		lvl = log_parse_level(val);
		if (lvl < 0)
			expect = "error, warn, info or debug";
		else
			*(int *)field = lvl;
		break;
	case OPT_ADMIT:
		if (!strcmp(val, "always"))
			*(int *)field = SSD_ADMIT_ALWAYS;
		else if (!strcmp(val, "second_touch"))
			*(int *)field = SSD_ADMIT_SECOND_TOUCH;
		else
			expect = "always or second_touch";
		break;
	case OPT_SSD:
		return add_ssd(c, val, err, errlen);
	case OPT_STRING:
	case OPT_LIST:
		if (strlen(val) >= d->max)
			return too_long(d, err, errlen);
		strcpy(field, val);
		break;
	case OPT_ADDRESSING:
		if (!strcmp(val, "auto"))
			*(int *)field = S3_ADDR_AUTO;
		else if (!strcmp(val, "path"))
			*(int *)field = S3_ADDR_PATH;
		else if (!strcmp(val, "virtual"))
			*(int *)field = S3_ADDR_VIRTUAL;
		else
			expect = "auto, path or virtual";
		break;
	case OPT_TRISTATE: {
		bool b;
		if (val && !strcmp(val, "auto"))
			*(int *)field = TRI_AUTO;
		else if (!parse_bool(val, &b))
			*(int *)field = b ? TRI_ON : TRI_OFF;
		else
			expect = "auto, on/off, yes/no, 1/0 or nothing";
		break;
	}
	case OPT_LOCALMETA:
		if (!strcmp(val, "auto"))
			*(int *)field = LOCAL_META_AUTO;
		else if (!strcmp(val, "threads"))
			*(int *)field = LOCAL_META_THREADS;
		else if (!strcmp(val, "shards"))
			*(int *)field = LOCAL_META_SHARDS;
		else
			expect = "auto, threads or shards";
		break;
	case OPT_PASS:
	case OPT_PASSVAL:
		pass_on(c, opt);
		break;
	}
	if (expect) {
		snprintf(err, errlen, "invalid value '%s' for option '%s' (expected %s)", val ? val : "",
			 d->name, expect);
		return -EINVAL;
	}
	return 0;
}

static const struct opt_def *find_opt(const char *name)
{
	for (unsigned i = 0; i < ARRAY_SIZE(opt_table); i++)
		if (!strcmp(opt_table[i].name, name))
			return &opt_table[i];
	return NULL;
}

int config_set(struct cachefs_config *c, const char *name, const char *val, bool mount_only,
	       char *err, size_t errlen)
{
	const struct opt_def *d = find_opt(name);
	char opt[1024];

	if (!d) {
		snprintf(err, errlen, "unknown option '%s' (cachefs --help lists them)", name);
		return -EINVAL;
	}
	if (mount_only && !d->mount) {
		snprintf(err, errlen, "option '%s' applies to the whole daemon: set it before the first [mount] "
			 "section", name);
		return -EINVAL;
	}
	if (d->type == OPT_SSD) {
		/* "ssd_cache = /a:1G,/b:1G": one store per comma. */
		char *copy = strdup(val ? val : ""), *save = NULL;
		int rc = copy ? 0 : -ENOMEM;
		for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save))
			rc = apply(c, d, t, t, err, errlen);
		free(copy);
		return rc;
	}
	snprintf(opt, sizeof(opt), "%s%s%s", name, val ? "=" : "", val ? val : "");
	return apply(c, d, opt, val, err, errlen);
}

int config_parse_opts(struct cachefs_config *c, const char *opts, char *err, size_t errlen)
{
	char *copy = strdup(opts), *save = NULL, *tok;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	bool after_ssd = false;
	const struct opt_def *list = NULL;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char opt[256];
		char *eq = strchr(tok, '=');
		const struct opt_def *d = NULL;

		/* ssd_cache=/a:1G,/b:1G: a bare path after it is another store. */
		if (after_ssd && tok[0] == '/' && !eq) {
			rc = add_ssd(c, tok, err, errlen);
			if (rc)
				break;
			continue;
		}
		after_ssd = eq && !strncmp(tok, "ssd_cache=", 10);
		/* members=a:1,b:2: a bare HOST:PORT or URL after a list is its next item. */
		if (list && !eq && strchr(tok, ':')) {
			char *field = (char *)c + list->off;
			if (strlen(field) + 1 + strlen(tok) >= list->max) {
				rc = too_long(list, err, errlen);
				break;
			}
			strcat(field, ",");
			strcat(field, tok);
			continue;
		}
		list = NULL;

		snprintf(opt, sizeof(opt), "%s", tok);
		if (eq)
			*eq = '\0';
		d = find_opt(tok);
		if (!d) {
			snprintf(err, errlen, "unknown option '%s' (cachefs --help lists them)", tok);
			rc = -EINVAL;
			break;
		}
		rc = apply(c, d, opt, eq ? eq + 1 : NULL, err, errlen);
		if (rc)
			break;
		if (d->type == OPT_LIST)
			list = d;
	}
	free(copy);
	return rc;
}

/* Fewest full pages a shard's part of the RAM tier gets by default. */
#define MIN_PAGES_PER_SHARD 4

int config_finish(struct cachefs_config *c, uint64_t mem_total, uint64_t mem_avail, unsigned cpus,
		  char *err, size_t errlen)
{
	char a[32], b[32], d[32];

	if (!is_pow2(c->cache.page_size) || c->cache.page_size < 4096 || c->cache.page_size > (16 << 20)) {
		snprintf(err, errlen, "page_size=%s is not a power of two from 4K to 16M; try page_size=1M",
			 fmt_size(c->cache.page_size, a, sizeof(a)));
		return -EINVAL;
	}
	if (c->fuse.max_read < 4096 || c->fuse.max_read > (1 << 20)) {
		snprintf(err, errlen, "max_read=%s must be from 4K to 1M (the kernel's request limit)",
			 fmt_size(c->fuse.max_read, a, sizeof(a)));
		return -EINVAL;
	}
	if ((c->cluster.serve[0] || c->cluster.etcd[0]) && !c->cluster.token_file[0]) {
		snprintf(err, errlen, "%s needs cluster_token_file=FILE: peers prove they belong with a shared token",
			 c->cluster.serve[0] ? "serve" : "etcd");
		return -EINVAL;
	}
	if ((c->cluster.etcd[0] || c->cluster.members[0]) && !c->cluster.serve[0]) {
		snprintf(err, errlen, "%s needs serve=ADDR:PORT: a member is reached at its page server",
			 c->cluster.etcd[0] ? "etcd" : "members");
		return -EINVAL;
	}
	if (c->cluster.etcd[0] && c->cluster.members[0]) {
		snprintf(err, errlen, "etcd and members both name the cluster's members: give one");
		return -EINVAL;
	}
	if (c->cluster.ttl < 1 || c->cluster.ttl > 3600) {
		snprintf(err, errlen, "cluster_ttl=%g must be from 1 to 3600 seconds", c->cluster.ttl);
		return -EINVAL;
	}
	if (c->cluster.peer_timeout < 0.001 || c->cluster.peer_timeout > 60) {
		snprintf(err, errlen, "peer_timeout=%g must be from 0.001 to 60 seconds", c->cluster.peer_timeout);
		return -EINVAL;
	}
	if (!c->cluster.name[0] || strspn(c->cluster.name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					  "0123456789-_.") != strlen(c->cluster.name)) {
		snprintf(err, errlen, "cluster=%s: use letters, digits, '-', '_' and '.'", c->cluster.name);
		return -EINVAL;
	}
	if (c->fuse.no_open == TRI_ON && !c->fuse.kernel_cache) {
		snprintf(err, errlen, "no_open needs kernel_cache: a kernel that does not ask at open keeps "
			 "the file's cached pages, which only kernel_cache promises");
		return -EINVAL;
	}
	if (c->src.write_part_size < (5 << 20) || c->src.write_part_size > S3_5G) {
		snprintf(err, errlen, "write_part_size=%s must be from 5M to 5G (the S3 limits of a part)",
			 fmt_size(c->src.write_part_size, a, sizeof(a)));
		return -EINVAL;
	}
	if (c->src.copy_max > S3_5G) {
		snprintf(err, errlen, "copy_max=%s is over the 5G S3 lets one CopyObject copy",
			 fmt_size(c->src.copy_max, a, sizeof(a)));
		return -EINVAL;
	}
	if (c->src.write_buffer < c->src.write_part_size) {
		snprintf(err, errlen, "write_buffer=%s is less than one part (write_part_size=%s)",
			 fmt_size(c->src.write_buffer, a, sizeof(a)), fmt_size(c->src.write_part_size, b, sizeof(b)));
		return -EINVAL;
	}
	if (!c->src.staging_dir[0]) {
		/*
		 * Staged bytes belong on the fast local disk the store is on: next
		 * to a store file, not beside a block device (/dev is in RAM).
		 */
		const char *slash = c->cache.nssd && c->cache.ssd[0].size ? strrchr(c->cache.ssd[0].path, '/') : NULL;
		if (slash && slash > c->cache.ssd[0].path)
			snprintf(c->src.staging_dir, sizeof(c->src.staging_dir), "%.*s/cachefs-staging",
				 (int)(slash - c->cache.ssd[0].path), c->cache.ssd[0].path);
		else if (getuid())
			snprintf(c->src.staging_dir, sizeof(c->src.staging_dir), "/var/tmp/cachefs-staging-%u",
				 (unsigned)getuid());
		else
			snprintf(c->src.staging_dir, sizeof(c->src.staging_dir), "/var/tmp/cachefs-staging");
	}
	if (!c->cache.ram_cache)
		c->cache.ram_cache = MAX(mem_total / 8, c->cache.page_size * 64);
	if (c->cache.ram_cache > mem_avail) {
		snprintf(err, errlen, "ram_cache=%s is more than the %s of memory available; lower -o ram_cache",
			 fmt_size(c->cache.ram_cache, a, sizeof(a)), fmt_size(mem_avail, b, sizeof(b)));
		return -ENOMEM;
	}
	/* A shard per CPU, unless that leaves a shard too small a part of RAM. */
	if (!c->run.shards)
		c->run.shards = (unsigned)MAX(MIN((uint64_t)MAX(cpus, 1),
					      c->cache.ram_cache / (c->cache.page_size * MIN_PAGES_PER_SHARD)), 1);
	if (c->cache.ram_cache / c->run.shards < c->cache.page_size) {
		snprintf(err, errlen, "ram_cache=%s leaves each of the %u shards less than one %s page; "
			 "raise ram_cache to at least %s or lower shards", fmt_size(c->cache.ram_cache, a, sizeof(a)),
			 c->run.shards, fmt_size(c->cache.page_size, b, sizeof(b)),
			 fmt_size((uint64_t)c->run.shards * c->cache.page_size, d, sizeof(d)));
		return -EINVAL;
	}
	if (!c->cache.readahead_budget)
		c->cache.readahead_budget = MIN(c->cache.ram_cache / 4, 1ULL << 30);
	if (!c->fuse.congestion_threshold)
		c->fuse.congestion_threshold = MAX(c->fuse.max_background * 3 / 4, 1);
	if (!c->fuse.max_idle_threads || c->fuse.max_idle_threads > c->fuse.max_threads)
		c->fuse.max_idle_threads = c->fuse.max_threads;
	return 0;
}

/* What each kind of option takes, as --help shows it. */
static const char *const arg_of[] = {
	[OPT_BOOL] = "", [OPT_PASS] = "", [OPT_UINT] = "=N", [OPT_SIZE] = "=SIZE",
	[OPT_SECONDS] = "=SECS", [OPT_LOGLEVEL] = "=LEVEL", [OPT_INTAKE] = "=WHO",
	[OPT_SSD] = "=PATH:SIZE", [OPT_ADMIT] = "=WHEN", [OPT_STRING] = "=VALUE", [OPT_LIST] = "=A[,B...]",
	[OPT_ADDRESSING] = "=STYLE", [OPT_LOCALMETA] = "=WHERE", [OPT_PASSVAL] = "=NAME",
	[OPT_TRISTATE] = "[=auto|on|off]", [OPT_PREFAULT] = "=SIZE|all|off", [OPT_NOT] = "",
	[OPT_ID] = "=N", [OPT_OCTAL] = "=OCTAL",
};

void config_print_help(FILE *f)
{
	for (unsigned i = 0; i < ARRAY_SIZE(opt_table); i++) {
		const struct opt_def *d = &opt_table[i];
		char name[48];
		snprintf(name, sizeof(name), "%s%s", d->name, arg_of[d->type]);
		fprintf(f, "    -o %-26s %s", name, d->help);
		if (*d->def)
			fprintf(f, " [%s]", d->def);
		if (d->mount)
			fputs(" (per mount)", f);
		fputc('\n', f);
	}
}
