/*
 * Mount options. One table names every option, its type, default and help;
 * `-o` strings (and later the INI config file) are parsed against it.
 */
#ifndef CACHEFS_OPTIONS_H
#define CACHEFS_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>

enum intake_mode {
	INTAKE_SHARDS,   /* shards read /dev/fuse on their io_uring */
	INTAKE_THREADS,  /* libfuse worker threads read it and hand reads to shards */
};

enum ssd_admit {
	SSD_ADMIT_ALWAYS,        /* every page fetched from the UFS */
	SSD_ADMIT_SECOND_TOUCH,  /* a page missed twice */
};

enum s3_addressing {
	S3_ADDR_AUTO,      /* virtual-hosted on AWS, path-style on other endpoints */
	S3_ADDR_PATH,      /* https://endpoint/bucket/key */
	S3_ADDR_VIRTUAL,   /* https://bucket.endpoint/key */
};

enum local_meta {
	LOCAL_META_AUTO,     /* threads for network file systems, the shards for local disks */
	LOCAL_META_THREADS,  /* always the metadata threads */
	LOCAL_META_SHARDS,   /* always the calling shard */
};

/* An on/off option whose default depends on other options. */
enum tristate { TRI_AUTO, TRI_OFF, TRI_ON };

#define CONFIG_MAX_SSD 8

struct ssd_spec {
	char path[PATH_MAX];
	uint64_t size;              /* 0: a whole block device */
};

/* The shard runtime (core/shard.c). */
struct runtime_opts {
	unsigned shards;            /* 0: one per online CPU */
	unsigned spin_us;           /* shard poll time before sleeping */
	bool sqpoll;
	int log_level;
};

/* The page tiers and read-ahead (iostore/, engine/read.c). */
struct cache_opts {
	uint64_t page_size;
	uint64_t ram_cache;         /* 0: a fraction of physical memory */
	uint64_t ram_prefault;      /* bytes faulted in ahead of use; UINT64_MAX: all at start; 0: none */
	uint64_t max_readahead;     /* daemon read-ahead window per stream, bytes */
	uint64_t readahead_budget;  /* read-ahead bytes in flight, whole mount */
	struct ssd_spec ssd[CONFIG_MAX_SSD];
	unsigned nssd;
	int ssd_admit;              /* enum ssd_admit */
};

/* A source's (ufs/): may differ per [mount] section. Secrets are never logged. */
struct source_opts {
	char endpoint[256];
	char region[64];
	char access_key[128];
	char secret_key[128];
	char session_token[4096];
	char profile[64];
	char passwd_file[PATH_MAX];
	char ca_bundle[PATH_MAX];
	bool anonymous;
	int s3_addressing;          /* enum s3_addressing */
	unsigned s3_max_connections;
	unsigned s3_list_max_keys;
	unsigned retries;
	double timeout;             /* seconds per request, retries included */
	double dir_cache_ttl;
	int local_meta;             /* enum local_meta */
	char manifest[PATH_MAX];    /* http: the file naming the source's files */
	bool read_only;             /* ro: changes answer EROFS */
	/* object stores: owners and modes of what has no metadata */
	int64_t uid, gid;           /* -1: the daemon's */
	unsigned umask;
	/* object stores: writes (ufs/s3_write.c) */
	char staging_dir[PATH_MAX]; /* "": next to the SSD store, else /var/tmp/cachefs-staging */
	uint64_t staging_max;       /* bytes of staged writes; 0: until the disk is full */
	uint64_t write_part_size;   /* multipart part size */
	uint64_t write_buffer;      /* part buffers in flight, whole mount */
	uint64_t copy_max;          /* largest server-side copy; larger ones are streamed */
};

/* The namespace and its metadata cache (engine/). */
struct meta_opts {
	bool read_only;             /* changes answer EROFS: ro, or a source that cannot change */
	double stale_if_error;      /* seconds an answer may be served while the source fails */
	unsigned meta_cache;        /* names kept in the metadata cache */
	unsigned meta_threads;      /* threads for metadata calls that may block (network file systems) */
};

/* The control plane (ctl/). */
struct ctl_opts {
	char ctl_socket[108];       /* "": the default for the mount point */
	char ctl_group[64];         /* "": owner only */
	char metrics[128];          /* ADDR:PORT of /metrics; "": off */
};

/* A cluster of nodes sharing one cache (cluster/). */
struct cluster_opts {
	char serve[128];            /* ADDR:PORT of the page server; "": none */
	char token_file[PATH_MAX];  /* the shared token, mode 0600; needed by serve and peers */
	char etcd[512];             /* URL[,URL...] of etcd; "": no membership */
	char members[1024];         /* a fixed member list HOST:PORT[,...] instead of etcd */
	char name[64];              /* cluster=: the members' prefix in etcd */
	double ttl;                 /* seconds a member's lease outlives its last keep-alive */
	double peer_timeout;        /* seconds a peer read may take before the source is asked */
};

/* The FUSE front end (fuse/) and the kernel mount. */
struct front_opts {
	bool kernel_cache, auto_cache, splice;
	int no_open;                /* enum tristate; resolved once the source is known */
	double attr_timeout, entry_timeout, negative_timeout;
	unsigned max_background, congestion_threshold;
	unsigned max_threads, max_idle_threads;
	int intake;                 /* enum intake_mode */
	uint64_t max_read;
	uint64_t read_ahead;        /* kernel read-ahead of the mount, bytes */
	/* options handed to the kernel mount as they are ("allow_other,ro") */
	char kernel_opts[1024];
};

/* Every option, one struct per module that reads them. */
struct cachefs_config {
	struct runtime_opts run;
	struct cache_opts cache;
	struct source_opts src;
	struct meta_opts meta;
	struct ctl_opts ctl;
	struct cluster_opts cluster;
	struct front_opts fuse;
	char config[PATH_MAX];      /* the INI file of -o config= */
};

/* Fills in every default. */
void config_defaults(struct cachefs_config *c);

/*
 * Applies a comma-separated option string. On error returns -EINVAL and
 * writes a one-line message naming the option into err.
 */
int config_parse_opts(struct cachefs_config *c, const char *opts, char *err, size_t errlen);

/*
 * Sets one option by name, as a config file line does; val is NULL for a
 * bare flag. With mount_only, refuses options that apply to the whole
 * daemon. -EINVAL with a message naming the option in err.
 */
int config_set(struct cachefs_config *c, const char *name, const char *val, bool mount_only,
	       char *err, size_t errlen);

/* One "key = value" of a [mount] section. */
struct config_kv {
	char *key, *val;
};

/* One [mount /PATH] section. */
struct config_mount {
	char *path;                 /* "/training-data"; "/" for the root */
	char *source;               /* s3://..., http://..., /dir */
	unsigned line;              /* of the section header */
	struct config_kv *opts;
	unsigned nopts;
};

struct config_file {
	char *name;
	struct config_mount *mounts;
	unsigned nmounts;
};

/*
 * Reads an INI config file: options before any section (or in [global])
 * go into c; each [mount /PATH] section needs `source =` and may set the
 * options marked per-mount in --help. Every value is checked here, so a
 * mistake is reported as "FILE:LINE: ...". Returns 0 or -errno; -ENOMSG
 * when the file holds no mount at all.
 */
int config_file_load(struct config_file *f, const char *file, struct cachefs_config *c,
		     char *err, size_t errlen);
/* c (the daemon's options) with a mount's own options applied on top. */
void config_mount_apply(const struct config_mount *m, struct cachefs_config *c);
void config_file_free(struct config_file *f);

/*
 * Cross-option checks and derived defaults (ram_cache from memory size,
 * shards from `cpus`). `mem_avail` is the memory the cache may use, in bytes.
 */
int config_finish(struct cachefs_config *c, uint64_t mem_total, uint64_t mem_avail, unsigned cpus,
		  char *err, size_t errlen);

/* Prints the option table for --help. */
void config_print_help(FILE *f);

#endif
