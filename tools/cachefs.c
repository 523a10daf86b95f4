/* cachefs: mounts a source through the page cache. */
#include "config.h"
#include "core/options.h"
#include "core/log.h"
#include "core/service.h"
#include "core/shard.h"
#include "core/util.h"
#include "fuse/ctl.h"
#include "fuse/fs.h"
#include "fuse/metrics.h"
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
 * Overwrites secret option values in our own argv, so that ps and
 * /proc/PID/cmdline do not show them once they are parsed.
 */
static void hide_secrets(int argc, char **argv)
{
	static const char *const secret[] = { "secret_key=", "session_token=" };

	for (int i = 1; i < argc; i++)
		for (unsigned k = 0; k < ARRAY_SIZE(secret); k++)
			for (char *p = strstr(argv[i], secret[k]); p; p = strstr(p, secret[k])) {
				p += strlen(secret[k]);
				for (; *p && *p != ','; p++)
					*p = 'x';
			}
}

/* config_finish with this machine's memory and CPUs. */
static int finish_config(struct cachefs_config *c, char *err, size_t errlen)
{
	uint64_t mem_total, mem_avail;

	if (mem_info(&mem_total, &mem_avail) < 0)
		mem_total = mem_avail = 1ULL << 30;
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
	if (finish_config(&cfg, err, sizeof(err))) {
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

/* What SIGHUP re-reads: the config file with the -o options over it. */
struct reload_ctx {
	struct cachefs *fs;
	const char *file;           /* NULL: no config file */
	const char **opts;
	unsigned nopts;
	struct cachefs_config cur;
};

/*
 * Runs on the control thread. Applies what can change while mounted (the log
 * level and the kernel's cache times) and says what else changed and needs
 * a restart: sources, caches, shards and credentials are wired into the
 * running mount.
 */
static void reload(void *arg, char *msg, size_t len)
{
	struct reload_ctx *r = arg;
	struct cachefs_config n, cmp;
	struct config_file cf;
	char err[512];

	if (!r->file) {
		snprintf(msg, len, "nothing reloaded: there is no config file, and -o options are fixed "
			 "for the life of the mount");
		return;
	}
	config_defaults(&n);
	if (config_file_load(&cf, r->file, &n, err, sizeof(err))) {
		snprintf(msg, len, "kept the running configuration: %s", err);
		return;
	}
	for (unsigned i = 0; i < r->nopts; i++)
		config_parse_opts(&n, r->opts[i], err, sizeof(err));
	if (finish_config(&n, err, sizeof(err))) {
		snprintf(msg, len, "kept the running configuration: %s: %s", r->file, err);
		config_file_free(&cf);
		return;
	}
	/* As at mount: a lone [mount /] is the plain mount's options. */
	if (cf.nmounts == 1 && !strcmp(cf.mounts[0].path, "/"))
		config_mount_apply(&cf.mounts[0], &n);
	config_file_free(&cf);
	log_max_level = n.log_level;
	cachefs_set_ttls(r->fs, &n);
	/* Everything but the reloaded fields still as running? */
	cmp = n;
	cmp.log_level = r->cur.log_level;
	cmp.attr_timeout = r->cur.attr_timeout;
	cmp.entry_timeout = r->cur.entry_timeout;
	cmp.negative_timeout = r->cur.negative_timeout;
	snprintf(msg, len, "re-read %s: log_level, attr_timeout, entry_timeout and negative_timeout "
		 "applied; %s", r->file,
		 memcmp(&cmp, &r->cur, sizeof(cmp)) ? "other daemon-wide options changed too and were NOT "
		 "applied (restart to apply them)" : "no other daemon-wide option changed; [mount] "
		 "sections are not re-read (restart to apply changes there)");
	r->cur.log_level = n.log_level;
	r->cur.attr_timeout = n.attr_timeout;
	r->cur.entry_timeout = n.entry_timeout;
	r->cur.negative_timeout = n.negative_timeout;
}

static void on_sighup(int sig)
{
	ctl_request_reload();
}

/* Whether SOURCE names a config file rather than a source. */
static bool is_config_file(const char *source)
{
	struct stat st;

	return !strstr(source, "://") && stat(source, &st) == 0 && S_ISREG(st.st_mode);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "check-config", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	struct config_file cf = { 0 };
	const char **opts = calloc((size_t)argc, sizeof(*opts));
	const char *fsname;
	unsigned nopts = 0;
	bool table = false;
	struct cachefs_config cfg;
	const char *source = NULL, *mnt = NULL;
	bool foreground = false, debug = false;
	char err[512], real_mnt[PATH_MAX], fuse_o[PATH_MAX + 2048];
	const struct ufs_ops *ops;
	struct ufs *ufs;
	struct cachefs *fs = NULL;
	struct fuse_session *se;
	struct intake *intake = NULL;
	int c, rc, exit_code = 1;
	struct reload_ctx rl = { 0 };
	char ctl_path[sizeof(cfg.ctl_socket)];

	config_defaults(&cfg);
	/* Options may come before or after the operands, as mount.fuse3 passes them. */
	while ((c = getopt_long(argc, argv, "-o:fdhVs", longopts, NULL)) != -1) {
		switch (c) {
		case 1:
			if (!source)
				source = optarg;
			else if (!mnt)
				mnt = optarg;
			else
				die_usage("unexpected argument '%s' (usage: cachefs SOURCE MOUNTPOINT [-o opts])", optarg);
			break;
		case 'o':
			if (config_parse_opts(&cfg, optarg, err, sizeof(err)))
				die_usage("%s", err);
			opts[nopts++] = optarg;
			break;
		case 'C':
			free(opts);
			return check_config(optarg);
		case 'f':
			foreground = true;
			break;
		case 'd':
			foreground = debug = true;
			break;
		case 's':
			break;   /* single-threaded: accepted for compatibility, ignored */
		case 'h':
			usage(stdout);
			free(opts);
			return 0;
		case 'V':
			printf("cachefs %s (libfuse %s)\n", PACKAGE_VERSION, fuse_pkgversion());
			free(opts);
			return 0;
		default:
			fprintf(stderr, "usage: cachefs SOURCE MOUNTPOINT [-o opt[,opt...]] [-f] [-d]  (cachefs --help)\n");
			free(opts);
			return EXIT_USAGE;
		}
	}
	hide_secrets(argc, argv);
	if (cfg.config[0]) {
		if (mnt)
			die_usage("%s", "-o config=FILE takes the place of SOURCE: give only MOUNTPOINT");
		mnt = source;
		source = cfg.config;
	}
	if (!source || !mnt)
		die_usage("%s", "missing SOURCE or MOUNTPOINT (usage: cachefs SOURCE MOUNTPOINT [-o opts])");
	fsname = source;
	if (cfg.config[0] || is_config_file(source)) {
		static char conf[PATH_MAX];
		bool named = cfg.config[0];

		/* The file's options first, then -o over them. */
		if (!realpath(source, conf))
			snprintf(conf, sizeof(conf), "%s", source);   /* config_file_load says why */
		fsname = source = conf;
		config_defaults(&cfg);
		rc = config_file_load(&cf, source, &cfg, err, sizeof(err));
		if (rc == -ENOMSG && !named)
			die_usage("%s is a file, not a directory, so it was read as a config file: %s", source, err);
		if (rc)
			die_usage("%s", err);
		for (unsigned i = 0; i < nopts; i++)
			config_parse_opts(&cfg, opts[i], err, sizeof(err));
		table = cf.nmounts > 1 || strcmp(cf.mounts[0].path, "/");
		if (!table) {
			config_mount_apply(&cf.mounts[0], &cfg);
			source = cf.mounts[0].source;
		}
	}
	if (finish_config(&cfg, err, sizeof(err)))
		die_usage("%s", err);
	log_max_level = debug ? LOG_LVL_DEBUG : cfg.log_level;

	ops = table ? &ufs_mtab_ops : ufs_driver_for(source);
	if (!ops) {
		fprintf(stderr, "cachefs: source %s: no driver for this scheme (this build reads " UFS_SCHEMES ")\n",
			source);
		free(opts);
		return EXIT_USAGE;
	}
	err[0] = '\0';
	rc = table ? ufs_mtab_init(&ufs, &cf, &cfg, err, sizeof(err)) :
		     ops->init(&ufs, source, &cfg, err, sizeof(err));
	config_file_free(&cf);
	if (rc) {
		fprintf(stderr, "cachefs: %s%s%s\n", table ? fsname : "", table ? ": " : "",
			err[0] ? err : strerror(-rc));
		free(opts);
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	if (check_mountpoint(mnt, real_mnt) < 0) {
		ops->fini(ufs);
		free(opts);
		return 1;
	}
	if (cfg.ctl_socket[0])
		snprintf(ctl_path, sizeof(ctl_path), "%s", cfg.ctl_socket);
	else if (ctl_socket_default(real_mnt, ctl_path, sizeof(ctl_path)) < 0) {
		fprintf(stderr, "cachefs: the control socket's path for %s is too long; set -o ctl_socket=PATH\n",
			real_mnt);
		ops->fini(ufs);
		free(opts);
		return EXIT_USAGE;
	}
	if (cfg.metrics[0] && metrics_check(cfg.metrics, err, sizeof(err)) < 0) {
		fprintf(stderr, "cachefs: %s\n", err);
		ops->fini(ufs);
		free(opts);
		return EXIT_USAGE;
	}
	if (ctl_open(ctl_path, cfg.ctl_group, err, sizeof(err)) < 0) {
		fprintf(stderr, "cachefs: %s\n", err);
		ops->fini(ufs);
		ctl_stop();
		free(opts);
		return 1;
	}

	snprintf(fuse_o, sizeof(fuse_o), "fsname=%s,subtype=cachefs,max_read=%llu%s%s", fsname,
		 (unsigned long long)cfg.max_read, cfg.fuse_opts[0] ? "," : "", cfg.fuse_opts);
	char *fargv[] = { argv[0], "-o", fuse_o, debug ? "-d" : NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(debug ? 4 : 3, fargv);

	rc = cachefs_create(&fs, &cfg, ops, ufs);
	if (rc) {
		fprintf(stderr, "cachefs: cannot stat source %s: %s\n", fsname, strerror(-rc));
		ops->fini(ufs);
		ctl_stop();
		free(opts);
		return 1;
	}
	cachefs_set_names(fs, fsname, real_mnt);
	rc = cachefs_open_store(fs, cfg.shards, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cachefs: %s\n", err);
		cachefs_destroy(fs);
		ctl_stop();
		free(opts);
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	se = fuse_session_new(&args, cachefs_ll_ops(), sizeof(*cachefs_ll_ops()), fs);
	if (!se) {
		fprintf(stderr, "cachefs: invalid FUSE options '%s'\n", fuse_o);
		cachefs_destroy(fs);
		ctl_stop();
		free(opts);
		return EXIT_USAGE;
	}
	if (fuse_set_signal_handlers(se) < 0)
		goto out_session;
	/* libfuse ends the session on SIGHUP; ours reloads instead. */
	struct sigaction sa = { .sa_handler = on_sighup, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	if (fuse_session_mount(se, real_mnt) < 0) {
		fprintf(stderr, "cachefs: mounting %s failed (is /dev/fuse there, and fusermount3 installed?)\n", real_mnt);
		goto out_signals;
	}
	if (fuse_daemonize(foreground) < 0)
		goto out_unmount;
	if (!foreground)
		log_use_syslog(true);

	struct shards_opts so = { .count = cfg.shards, .pin = true, .spin_us = cfg.spin_us,
				  .sqpoll = cfg.sqpoll };
	if (shards_start(&so) < 0)
		goto out_unmount;
	if (cachefs_start(fs) < 0)
		goto out_shards;
	rl = (struct reload_ctx){ .fs = fs, .file = table || is_config_file(fsname) ? fsname : NULL,
				  .opts = opts, .nopts = nopts, .cur = cfg };
	if (ctl_start(fs, reload, &rl) < 0)
		goto out_shards;
	if (cfg.metrics[0])
		metrics_start(cfg.metrics, fs);

	log_info("mounted %s at %s: %u shards, %llu MiB RAM tier, %llu KiB pages, intake by %s",
		 fsname, real_mnt, shard_count(), (unsigned long long)(cfg.ram_cache >> 20),
		 (unsigned long long)(cfg.page_size >> 10),
		 cfg.intake == INTAKE_SHARDS ? "shards" : "threads");
	if (cfg.intake == INTAKE_SHARDS) {
		if (intake_start(&intake, se, 2) < 0)
			goto out_shards;
		service_start(real_mnt, cachefs_summary, fs);
		intake_wait(intake);
		intake_stop(intake);
		exit_code = 0;
	} else {
		struct fuse_loop_config *lc = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(lc, 1);
		fuse_loop_cfg_set_max_threads(lc, cfg.max_threads);
		fuse_loop_cfg_set_idle_threads(lc, cfg.max_idle_threads);
		service_start(real_mnt, cachefs_summary, fs);
		rc = fuse_session_loop_mt(se, lc);
		fuse_loop_cfg_destroy(lc);
		exit_code = rc < 0 ? 1 : 0;
	}
	log_info("unmounting %s", real_mnt);
	service_stop();
out_shards:
	fuse_session_unmount(se);
	metrics_stop();
	ctl_stop();
	cachefs_stop(fs);
	shards_stop();
	intake_free(intake);
	goto out_signals;
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	ctl_stop();
	cachefs_destroy(fs);
	fuse_opt_free_args(&args);
	free(opts);
	log_tick(true);
	return exit_code;
}
