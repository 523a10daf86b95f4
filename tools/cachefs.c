/* cachefs: mounts a source through the page cache. */
#include "config.h"
#include "core/options.h"
#include "core/log.h"
#include "core/service.h"
#include "core/shard.h"
#include "core/util.h"
#include "cluster/cluster.h"
#include "ctl/metrics.h"
#include "ctl/proto.h"
#include "ctl/server.h"
#include "ctl/status.h"
#include "ctl/web.h"
#include "engine/engine.h"
#include "fuse/fs.h"
#include "fuse/intake.h"
#include "ufs/ufs.h"

#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_USAGE 2

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cachefs SOURCE MOUNTPOINT [-o opt[,opt...]] [-f] [-d]\n"
		"       cachefs CONFIG_FILE MOUNTPOINT [-o ...]   (or MOUNTPOINT -o config=FILE)\n"
		"       cachefs --check-config CONFIG_FILE\n"
		"\n"
		"Mounts SOURCE at MOUNTPOINT, caching its pages in RAM (and on SSD with\n"
		"-o ssd_cache). SOURCE is a local or NFS directory, s3://BUCKET[/PREFIX]\n"
		"(credentials: -o passwd_file, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or\n"
		"~/.aws/credentials), or http[s]://HOST/DIR/ with -o manifest=FILE naming its\n"
		"files. Unmount with `fusermount3 -u MOUNTPOINT`.\n"
		"\n"
		"A CONFIG_FILE (INI) sets these options as `name = value` lines and joins\n"
		"sources under one root with [mount /PATH] sections holding `source = ...`\n"
		"and the options marked (per mount); -o options override its global ones.\n"
		"\n"
		"    --check-config FILE  validate FILE without mounting\n"
		"    -f             stay in the foreground\n"
		"    -d             foreground with FUSE request tracing\n"
		"    -h, --help     this text\n"
		"    -V, --version  print the version\n"
		"\n"
		"Options (-o), [default]:\n");
	config_print_help(f);
}

__attribute__((format(printf, 1, 2), noreturn))
static void die_usage(const char *fmt, ...)
{
	fprintf(stderr, "cachefs: ");
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(EXIT_USAGE);
}

/*
 * A FUSE daemon killed with -9 leaves its mount answering ENOTCONN. stat()
 * alone can miss it (the kernel may answer from cached attributes); statfs
 * always asks the daemon.
 */
static int clean_dead_mount(const char *mnt)
{
	struct statfs sf;
	struct stat st;

	if ((stat(mnt, &st) == 0 || errno != ENOTCONN) &&
	    (statfs(mnt, &sf) == 0 || errno != ENOTCONN))
		return 0;
	if (umount2(mnt, MNT_DETACH) == 0) {
		fprintf(stderr, "cachefs: removed the dead mount left at %s\n", mnt);
		return 0;
	}
	pid_t pid = fork();
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", "-q", mnt, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	if (pid > 0)
		waitpid(pid, &status, 0);
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		return -ENOTCONN;
	fprintf(stderr, "cachefs: removed the dead mount left at %s\n", mnt);
	return 0;
}

/* real: PATH_MAX bytes, gets the resolved mount point. */
static int check_mountpoint(const char *mnt, char *real)
{
	struct stat st, parent;
	char up[PATH_MAX + 4];

	if (clean_dead_mount(mnt) < 0) {
		fprintf(stderr, "cachefs: %s is a dead mount and could not be removed; run `fusermount3 -uz %s` as its owner\n",
			mnt, mnt);
		return -1;
	}
	if (!realpath(mnt, real) || stat(real, &st) < 0) {
		fprintf(stderr, "cachefs: mount point %s: %s; create it with `mkdir -p %s`\n", mnt,
			strerror(errno), mnt);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "cachefs: mount point %s is not a directory; mount on an empty directory\n", mnt);
		return -1;
	}
	snprintf(up, sizeof(up), "%s/..", real);
	if (strcmp(real, "/") && stat(up, &parent) == 0 && parent.st_dev != st.st_dev) {
		fprintf(stderr, "cachefs: mount point %s is busy: something is mounted there; unmount it first (fusermount3 -u %s)\n",
			real, real);
		return -1;
	}
	return 0;
}

/*
 * Overwrites secret option values in our own argv with a fixed mask, so
 * that ps and /proc/PID/cmdline show neither the secret nor its length:
 * the rest of the argument moves left and the end is padded with NULs.
 */
static void hide_secrets(int argc, char **argv)
{
	static const char *const secret[] = { "secret_key=", "session_token=" };

	for (int i = 1; i < argc; i++)
		for (unsigned k = 0; k < ARRAY_SIZE(secret); k++)
			for (char *p = strstr(argv[i], secret[k]); p; p = strstr(p, secret[k])) {
				size_t total = strlen(argv[i]) + 1, len, mask;
				p += strlen(secret[k]);
				len = strcspn(p, ",");
				mask = MIN(len, 4);
				memset(p, '*', mask);
				memmove(p + mask, p + len, strlen(p + len) + 1);
				/* What the move freed stays inside the argument's memory. */
				memset(argv[i] + strlen(argv[i]), '\0', total - strlen(argv[i]));
				p += mask;
			}
}

/*
 * config_finish with this machine's memory and CPUs. A reload does not
 * check ram_cache against the memory available: the running RAM tier is
 * what took it.
 */
static int finish_config(struct cachefs_config *c, bool reloading, char *err, size_t errlen)
{
	uint64_t mem_total, mem_avail;

	if (mem_info(&mem_total, &mem_avail) < 0)
		mem_total = mem_avail = 1ULL << 30;
	if (reloading)
		mem_avail = UINT64_MAX;
	return config_finish(c, mem_total, mem_avail, (unsigned)sysconf(_SC_NPROCESSORS_ONLN), err,
			     errlen);
}

/* --check-config: reads FILE as a mount would, without mounting. */
static int check_config(const char *file)
{
	struct cachefs_config cfg;
	struct config_file cf;
	char err[1024];

	config_defaults(&cfg);
	if (config_file_load(&cf, file, &cfg, err, sizeof(err))) {
		fprintf(stderr, "cachefs: %s\n", err);
		return EXIT_USAGE;
	}
	if (finish_config(&cfg, false, err, sizeof(err))) {
		fprintf(stderr, "cachefs: %s: %s\n", file, err);
		config_file_free(&cf);
		return EXIT_USAGE;
	}
	for (unsigned i = 0; i < cf.nmounts; i++)
		if (!ufs_driver_for(cf.mounts[i].source)) {
			fprintf(stderr, "cachefs: %s: [mount %s] source %s: no driver for this scheme (this build "
				"reads " UFS_SCHEMES ")\n", file, cf.mounts[i].path, cf.mounts[i].source);
			config_file_free(&cf);
			return EXIT_USAGE;
		}
	printf("%s: valid, %u mount%s\n", file, cf.nmounts, cf.nmounts == 1 ? "" : "s");
	for (unsigned i = 0; i < cf.nmounts; i++)
		printf("  %s <- %s\n", cf.mounts[i].path, cf.mounts[i].source);
	config_file_free(&cf);
	return 0;
}

/* Whether SOURCE names a config file rather than a source. */
static bool is_config_file(const char *source)
{
	struct stat st;

	return !strstr(source, "://") && stat(source, &st) == 0 && S_ISREG(st.st_mode);
}

/* The daemon's state through its startup steps; each step's undo unwinds it. */
struct daemon {
	int argc;
	char **argv;
	/* the command line and the config file */
	struct cachefs_config cfg;
	struct config_file cf;
	char **opts;                /* copies of the -o strings (argv's are masked), for SIGHUP */
	unsigned nopts;
	const char *source, *mnt, *fsname;
	bool table, foreground, debug;
	char real_mnt[PATH_MAX];
	char ctl_path[sizeof(((struct ctl_opts *)0)->ctl_socket)];
	char fuse_o[PATH_MAX * 2 + 2048];
	char *fargv[5];
	struct fuse_args args;
	/* what the steps built */
	const struct ufs_ops *ops;
	struct ufs *ufs;            /* until the engine owns it */
	struct engine *e;
	struct fusefs *ff;
	struct fuse_session *se;
	struct intake *intake;
	struct cachefs_config running;   /* what SIGHUP compares against */
};

/*
 * Runs on the control thread at SIGHUP. Applies what can change while
 * mounted (the log level and the kernel's cache times) and says what else
 * changed and needs a restart: sources, caches, shards and credentials are
 * wired into the running mount.
 */
static void reload(void *arg, char *msg, size_t len)
{
	struct daemon *d = arg;
	const char *file = d->table || is_config_file(d->fsname) ? d->fsname : NULL;
	struct cachefs_config n, cmp;
	struct config_file cf;
	char err[512];

	if (!file) {
		snprintf(msg, len, "nothing reloaded: there is no config file, and -o options are fixed "
			 "for the life of the mount");
		return;
	}
	config_defaults(&n);
	if (config_file_load(&cf, file, &n, err, sizeof(err))) {
		snprintf(msg, len, "kept the running configuration: %s", err);
		return;
	}
	for (unsigned i = 0; i < d->nopts; i++)
		config_parse_opts(&n, d->opts[i], err, sizeof(err));
	if (finish_config(&n, true, err, sizeof(err))) {
		snprintf(msg, len, "kept the running configuration: %s: %s", file, err);
		config_file_free(&cf);
		return;
	}
	/* As at mount: a lone [mount /] is the plain mount's options. */
	if (cf.nmounts == 1 && !strcmp(cf.mounts[0].path, "/"))
		config_mount_apply(&cf.mounts[0], &n);
	config_file_free(&cf);
	log_max_level = d->debug ? LOG_LVL_DEBUG : n.run.log_level;
	fusefs_set_ttls(d->ff, &n.fuse);
	/* Everything but the reloaded fields still as running? */
	cmp = n;
	cmp.run.log_level = d->running.run.log_level;
	cmp.fuse.attr_timeout = d->running.fuse.attr_timeout;
	cmp.fuse.entry_timeout = d->running.fuse.entry_timeout;
	cmp.fuse.negative_timeout = d->running.fuse.negative_timeout;
	snprintf(msg, len, "re-read %s: log_level, attr_timeout, entry_timeout and negative_timeout "
		 "applied; %s", file,
		 memcmp(&cmp, &d->running, sizeof(cmp)) ? "other daemon-wide options changed too and were NOT "
		 "applied (restart to apply them)" : "no other daemon-wide option changed; [mount] "
		 "sections are not re-read (restart to apply changes there)");
	d->running.run.log_level = n.run.log_level;
	d->running.fuse.attr_timeout = n.fuse.attr_timeout;
	d->running.fuse.entry_timeout = n.fuse.entry_timeout;
	d->running.fuse.negative_timeout = n.fuse.negative_timeout;
}

static void on_sighup(int sig)
{
	ctl_request_reload();
}

/* The front end's families on /metrics: FUSE request counts, the cluster's. */
static void front_metrics(struct metrics_buf *b, void *arg)
{
	static const char *const names[] = FS_OP_NAMES;
	uint64_t n[FS_OP_COUNT];

	fusefs_requests(arg, n);
	metrics_family(b, "cachefs_fuse_requests_total", "counter", "FUSE requests served, by operation.");
	for (unsigned i = 0; i < FS_OP_COUNT; i++)
		metrics_put(b, "cachefs_fuse_requests_total{op=\"%s\"} %llu\n", names[i], (unsigned long long)n[i]);
	cluster_metrics(b);
}

/* ---- the startup steps: each returns 0 or an exit status ---- */

/* Options may come before or after the operands, as mount.fuse3 passes them. */
static int parse_command_line(struct daemon *d)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "check-config", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	char err[512];
	int c;

	config_defaults(&d->cfg);
	d->opts = calloc((size_t)d->argc, sizeof(*d->opts));
	if (!d->opts)
		return 1;
	while ((c = getopt_long(d->argc, d->argv, "-o:fdhVs", longopts, NULL)) != -1) {
		switch (c) {
		case 1:
			if (!d->source)
				d->source = optarg;
			else if (!d->mnt)
				d->mnt = optarg;
			else
				die_usage("unexpected argument '%s' (usage: cachefs SOURCE MOUNTPOINT [-o opts])", optarg);
			break;
		case 'o':
			if (config_parse_opts(&d->cfg, optarg, err, sizeof(err)))
				die_usage("%s", err);
			/* A copy: argv's secrets are masked below, and the
			 * options are parsed again over a config file. */
			if (!(d->opts[d->nopts] = strdup(optarg)))
				return 1;
			d->nopts++;
			break;
		case 'C':
			exit(check_config(optarg));
		case 'f':
			d->foreground = true;
			break;
		case 'd':
			d->foreground = d->debug = true;
			break;
		case 's':
			break;   /* single-threaded: accepted for compatibility, ignored */
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("cachefs %s (libfuse %s)\n", PACKAGE_VERSION, fuse_pkgversion());
			exit(0);
		default:
			fprintf(stderr, "usage: cachefs SOURCE MOUNTPOINT [-o opt[,opt...]] [-f] [-d]  (cachefs --help)\n");
			return EXIT_USAGE;
		}
	}
	hide_secrets(d->argc, d->argv);
	return 0;
}

/* SOURCE may be a config file (or -o config= names one): its options, then -o over them. */
static int read_config(struct daemon *d)
{
	static char conf[PATH_MAX];
	char err[512];
	int rc;

	if (d->cfg.config[0]) {
		if (d->mnt)
			die_usage("%s", "-o config=FILE takes the place of SOURCE: give only MOUNTPOINT");
		d->mnt = d->source;
		d->source = d->cfg.config;
	}
	if (!d->source || !d->mnt)
		die_usage("%s", "missing SOURCE or MOUNTPOINT (usage: cachefs SOURCE MOUNTPOINT [-o opts])");
	d->fsname = d->source;
	if (d->cfg.config[0] || is_config_file(d->source)) {
		bool named = d->cfg.config[0];

		if (!realpath(d->source, conf))
			snprintf(conf, sizeof(conf), "%s", d->source);   /* config_file_load says why */
		d->fsname = d->source = conf;
		config_defaults(&d->cfg);
		rc = config_file_load(&d->cf, d->source, &d->cfg, err, sizeof(err));
		if (rc == -ENOMSG && !named)
			die_usage("%s is a file, not a directory, so it was read as a config file: %s", d->source, err);
		if (rc)
			die_usage("%s", err);
		for (unsigned i = 0; i < d->nopts; i++)
			config_parse_opts(&d->cfg, d->opts[i], err, sizeof(err));
		d->table = d->cf.nmounts > 1 || strcmp(d->cf.mounts[0].path, "/");
		if (!d->table) {
			config_mount_apply(&d->cf.mounts[0], &d->cfg);
			d->source = d->cf.mounts[0].source;
		}
	}
	if (finish_config(&d->cfg, false, err, sizeof(err)))
		die_usage("%s", err);
	log_max_level = d->debug ? LOG_LVL_DEBUG : d->cfg.run.log_level;
	d->running = d->cfg;
	return 0;
}

static void free_config(struct daemon *d)
{
	config_file_free(&d->cf);
}

static void free_opts(struct daemon *d)
{
	for (unsigned i = 0; i < d->nopts; i++) {
		explicit_bzero(d->opts[i], strlen(d->opts[i]));   /* they may hold secrets */
		free(d->opts[i]);
	}
	free(d->opts);
}

static int open_source(struct daemon *d)
{
	char err[512] = "";
	int rc;

	d->ops = d->table ? &ufs_mtab_ops : ufs_driver_for(d->source);
	if (!d->ops) {
		fprintf(stderr, "cachefs: source %s: no driver for this scheme (this build reads " UFS_SCHEMES ")\n",
			d->source);
		return EXIT_USAGE;
	}
	/* A source that cannot change (http; a mount table of such, or all ro) makes a read-only mount. */
	if (d->table ? !ufs_mtab_writable(&d->cf, &d->cfg) : !d->ops->create)
		d->cfg.src.read_only = true;
	if (d->cfg.fuse.no_open == TRI_ON && !d->cfg.src.read_only) {
		fprintf(stderr, "cachefs: no_open needs ro: the kernel would not tell the daemon when a written "
			"file is closed, and close() must return the upload's result\n");
		return EXIT_USAGE;
	}
	if (d->cfg.fuse.no_open == TRI_AUTO)
		d->cfg.fuse.no_open = d->cfg.fuse.kernel_cache && d->cfg.src.read_only ? TRI_ON : TRI_OFF;
	d->cfg.meta.read_only = d->cfg.src.read_only;
	rc = d->table ? ufs_mtab_init(&d->ufs, &d->cf, &d->cfg, err, sizeof(err)) :
			d->ops->init(&d->ufs, d->source, &d->cfg.src, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cachefs: %s%s%s\n", d->table ? d->fsname : "", d->table ? ": " : "",
			err[0] ? err : strerror(-rc));
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	return 0;
}

static void close_source(struct daemon *d)
{
	if (d->ufs)
		d->ops->fini(d->ufs);
}

static int check_mount_point(struct daemon *d)
{
	return check_mountpoint(d->mnt, d->real_mnt) < 0 ? 1 : 0;
}

static int bind_control_socket(struct daemon *d)
{
	char err[512];

	if (d->cfg.ctl.ctl_socket[0] == '/') {
		snprintf(d->ctl_path, sizeof(d->ctl_path), "%s", d->cfg.ctl.ctl_socket);
	} else if (d->cfg.ctl.ctl_socket[0]) {
		/* Absolute before daemonizing moves to /: stop unlinks it by this name. */
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)) || (size_t)snprintf(d->ctl_path, sizeof(d->ctl_path), "%s/%s", cwd,
				      d->cfg.ctl.ctl_socket) >= sizeof(d->ctl_path)) {
			fprintf(stderr, "cachefs: ctl_socket=%s: the path is too long; give a short absolute one\n",
				d->cfg.ctl.ctl_socket);
			return EXIT_USAGE;
		}
	} else if (ctl_socket_default(d->real_mnt, getuid(), d->ctl_path, sizeof(d->ctl_path)) < 0) {
		fprintf(stderr, "cachefs: the control socket's path for %s is too long; set -o ctl_socket=PATH\n",
			d->real_mnt);
		return EXIT_USAGE;
	}
	if (ctl_open(d->ctl_path, d->cfg.ctl.ctl_group, err, sizeof(err)) < 0) {
		fprintf(stderr, "cachefs: %s\n", err);
		return 1;
	}
	return 0;
}

static void stop_control(struct daemon *d)
{
	ctl_stop();
}

static int check_metrics_address(struct daemon *d)
{
	char err[512];

	if (d->cfg.ctl.metrics[0] && web_check(d->cfg.ctl.metrics, err, sizeof(err)) < 0) {
		fprintf(stderr, "cachefs: %s\n", err);
		return EXIT_USAGE;
	}
	return 0;
}

static int check_cluster(struct daemon *d)
{
	char err[768];
	int rc = cluster_check(&d->cfg.cluster, d->cfg.cache.page_size, err, sizeof(err));

	if (rc) {
		fprintf(stderr, "cachefs: %s\n", err);
		return EXIT_USAGE;
	}
	return 0;
}

static int create_engine(struct daemon *d)
{
	int rc = engine_create(&d->e, &d->cfg.cache, &d->cfg.meta, d->ops, d->ufs);

	if (rc) {
		fprintf(stderr, "cachefs: %s\n", strerror(-rc));
		return 1;
	}
	d->ufs = NULL;   /* the engine's now */
	engine_set_names(d->e, d->fsname, d->real_mnt);
	return 0;
}

static void destroy_engine(struct daemon *d)
{
	engine_destroy(d->e);
}

/* Before daemonizing, so that its errors reach the terminal. */
static int open_store(struct daemon *d)
{
	char err[512];
	int rc = engine_open_store(d->e, d->cfg.run.shards, err, sizeof(err));

	if (rc) {
		fprintf(stderr, "cachefs: %s\n", err);
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	return 0;
}

static int create_front_end(struct daemon *d)
{
	if (fusefs_create(&d->ff, d->e, &d->cfg.fuse, d->real_mnt)) {
		fprintf(stderr, "cachefs: %s\n", strerror(ENOMEM));
		return 1;
	}
	return 0;
}

static void destroy_front_end(struct daemon *d)
{
	fusefs_destroy(d->ff);
}

/* s with ',' and '\\' escaped, as libfuse's option parser reads them back. */
static void escape_opt(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s && o + 2 < len; s++) {
		if (*s == ',' || *s == '\\')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o] = '\0';
}

/* Whether the comma-separated opts hold the option `name`. */
static bool has_opt(const char *opts, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = opts; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] ? 1 : 0))
		if (!strncmp(p, name, n) && (p[n] == ',' || !p[n]))
			return true;
	return false;
}

/*
 * A read-only mount says so in /proc/mounts. Other users (allow_other) get
 * the kernel's permission checks on the source's modes: without
 * default_permissions nothing would check them at all.
 */
static int create_session(struct daemon *d)
{
	char fsname[PATH_MAX * 2];
	const char *ko = d->cfg.fuse.kernel_opts;
	bool perms = has_opt(ko, "allow_other") && !has_opt(ko, "default_permissions");

	escape_opt(fsname, sizeof(fsname), d->fsname);
	snprintf(d->fuse_o, sizeof(d->fuse_o), "fsname=%s,subtype=cachefs%s,max_read=%llu%s%s%s", fsname,
		 d->cfg.src.read_only ? ",ro" : "", (unsigned long long)d->cfg.fuse.max_read,
		 perms ? ",default_permissions" : "",
		 *ko ? "," : "", ko);
	d->fargv[0] = d->argv[0];
	d->fargv[1] = "-o";
	d->fargv[2] = d->fuse_o;
	d->fargv[3] = d->debug ? "-d" : NULL;
	d->args = (struct fuse_args)FUSE_ARGS_INIT(d->debug ? 4 : 3, d->fargv);
	d->se = fuse_session_new(&d->args, fusefs_ops(), sizeof(*fusefs_ops()), d->ff);
	if (!d->se) {
		fprintf(stderr, "cachefs: invalid FUSE options '%s'\n", d->fuse_o);
		fuse_opt_free_args(&d->args);
		return EXIT_USAGE;
	}
	fusefs_set_session(d->ff, d->se);
	return 0;
}

static void destroy_session(struct daemon *d)
{
	fuse_session_destroy(d->se);
	fuse_opt_free_args(&d->args);
}

static int install_signals(struct daemon *d)
{
	struct sigaction sa = { .sa_handler = on_sighup, .sa_flags = SA_RESTART };

	if (fuse_set_signal_handlers(d->se) < 0)
		return 1;
	/* libfuse ends the session on SIGHUP; ours reloads instead. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	return 0;
}

static void remove_signals(struct daemon *d)
{
	fuse_remove_signal_handlers(d->se);
}

static int mount_session(struct daemon *d)
{
	if (fuse_session_mount(d->se, d->real_mnt) < 0) {
		fprintf(stderr, "cachefs: mounting %s failed (is /dev/fuse there, and fusermount3 installed?)\n",
			d->real_mnt);
		return 1;
	}
	return 0;
}

static void unmount_session(struct daemon *d)
{
	fuse_session_unmount(d->se);
}

/* INIT answered here, before any intake runs (fuse/intake.h says why). */
static int answer_init(struct daemon *d)
{
	return intake_handshake(d->se) < 0 ? 1 : 0;
}

static int daemonize(struct daemon *d)
{
	if (fuse_daemonize(d->foreground) < 0)
		return 1;
	if (!d->foreground)
		log_use_syslog(true);
	return 0;
}

/* Its buffers before the shards, so that they are freed after the shards stopped. */
static int prepare_intake(struct daemon *d)
{
	if (d->cfg.fuse.intake != INTAKE_SHARDS)
		return 0;
	return intake_create(&d->intake, d->se, d->cfg.run.shards, 2) < 0 ? 1 : 0;
}

static void free_intake(struct daemon *d)
{
	intake_free(d->intake);
}

static int create_cluster(struct daemon *d)
{
	char err[512];

	if (cluster_create(d->cfg.src.timeout, err, sizeof(err))) {
		log_err("%s", err);
		return 1;
	}
	return 0;
}

static void destroy_cluster(struct daemon *d)
{
	cluster_destroy();
}

static int start_shards(struct daemon *d)
{
	struct shards_opts so = { .count = d->cfg.run.shards, .pin = true, .spin_us = d->cfg.run.spin_us,
				  .sqpoll = d->cfg.run.sqpoll };

	return shards_start(&so) < 0 ? 1 : 0;
}

static void stop_shards(struct daemon *d)
{
	shards_stop();
}

static int start_engine(struct daemon *d)
{
	return engine_start(d->e) < 0 ? 1 : 0;
}

static void stop_engine(struct daemon *d)
{
	engine_stop(d->e);
}

static int start_control(struct daemon *d)
{
	return ctl_start(d->e, reload, d) < 0 ? 1 : 0;
}

static int start_metrics(struct daemon *d)
{
	if (d->cfg.ctl.metrics[0])
		web_start(d->cfg.ctl.metrics, d->e, ctl_jobs(), front_metrics, d->ff);
	return 0;
}

static void stop_metrics(struct daemon *d)
{
	web_stop();
}

static int start_cluster(struct daemon *d)
{
	char err[768];

	if (cluster_start(d->e, err, sizeof(err))) {
		log_err("%s", err);
		return 1;
	}
	if (cluster_load_ops()) {
		jobs_set_cluster(ctl_jobs(), cluster_load_ops());
		ctl_set_cluster(cluster_members_json);
	}
	return 0;
}

static void stop_cluster(struct daemon *d)
{
	cluster_stop();
}

static int start_serving(struct daemon *d)
{
	log_info("mounted %s at %s: %u shards, %llu MiB RAM tier, %llu KiB pages, intake by %s",
		 d->fsname, d->real_mnt, shard_count(), (unsigned long long)(d->cfg.cache.ram_cache >> 20),
		 (unsigned long long)(d->cfg.cache.page_size >> 10),
		 d->cfg.fuse.intake == INTAKE_SHARDS ? "shards" : "threads");
	if (d->intake)
		intake_start(d->intake);
	service_start(d->real_mnt, status_summary, d->e);
	return 0;
}

/* The kernel gets no new requests to us from here on. */
static void stop_serving(struct daemon *d)
{
	log_info("unmounting %s", d->real_mnt);
	service_stop();
	if (d->intake)
		intake_stop(d->intake);
	fuse_session_unmount(d->se);
}

/* Until unmounted or signalled. */
static int serve(struct daemon *d)
{
	struct fuse_loop_config *lc;
	int rc;

	if (d->intake) {
		intake_wait(d->intake);
		return 0;
	}
	lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(lc, 1);
	fuse_loop_cfg_set_max_threads(lc, d->cfg.fuse.max_threads);
	fuse_loop_cfg_set_idle_threads(lc, d->cfg.fuse.max_idle_threads);
	rc = fuse_session_loop_mt(d->se, lc);
	fuse_loop_cfg_destroy(lc);
	return rc < 0 ? 1 : 0;
}

static const struct step {
	int (*run)(struct daemon *d);
	void (*undo)(struct daemon *d);
} steps[] = {
	{ parse_command_line, free_opts },
	{ read_config, free_config },
	{ open_source, close_source },
	{ check_mount_point, NULL },
	{ bind_control_socket, stop_control },
	{ check_metrics_address, NULL },
	{ check_cluster, destroy_cluster },   /* what check and create made (calls, members, peers) */
	{ create_engine, destroy_engine },
	{ open_store, NULL },
	{ create_front_end, destroy_front_end },
	{ create_session, destroy_session },
	{ install_signals, remove_signals },
	{ mount_session, unmount_session },
	{ daemonize, NULL },
	{ answer_init, NULL },
	{ prepare_intake, free_intake },
	{ create_cluster, NULL },
	{ start_shards, stop_shards },
	{ start_engine, stop_engine },
	{ start_control, stop_control },
	{ start_metrics, stop_metrics },
	{ start_cluster, stop_cluster },
	{ start_serving, stop_serving },
	{ serve, NULL },
};

int main(int argc, char **argv)
{
	struct daemon d = { .argc = argc, .argv = argv };
	unsigned done = 0;
	int rc = 0;

	/* Each step that ran is undone, in reverse, whatever stopped the run. */
	while (done < ARRAY_SIZE(steps) && !(rc = steps[done].run(&d)))
		done++;
	while (done-- > 0)
		if (steps[done].undo)
			steps[done].undo(&d);
	log_tick(true);
	return rc;
}
