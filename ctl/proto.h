/*
 * The control protocol, shared by the daemon (ctl/server.c) and cachefsctl:
 * a Unix stream socket, one JSON object per line each way (jansson).
 *
 * Requests: {"cmd": NAME, ...}. Replies carry "ok": true, or "ok": false
 * and "error": a one-line message. A watched job answers with a job object
 * every CTL_PROGRESS_MS and a last one in its final state.
 *
 *   status | stats              the daemon's state (ctl/status.c)
 *   load | pin                  "paths": [ABSOLUTE...], "parallel": N   -> "job": ID
 *                               (load in a cluster: split among the members by owner;
 *                               "here": true loads every page onto this node)
 *   cluster                     -> "members": [each member's /v1/info, or its "error"]
 *   evict | unpin               "paths": [...], or unpin "all": true    -> "job": ID
 *   jobs                        -> "jobs": [job...]
 *   watch | cancel              "job": ID
 */
#ifndef CACHEFS_CTL_PROTO_H
#define CACHEFS_CTL_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#define CTL_PROGRESS_MS 200
#define CTL_MAX_LINE (1 << 20)
#define CTL_MAX_PARALLEL 1024
#define CTL_MAX_JOBS 16          /* running at once; each is a thread */

/* Job kinds and states, as named on the wire. */
enum ctl_job_kind { CTL_JOB_LOAD, CTL_JOB_EVICT, CTL_JOB_PIN, CTL_JOB_UNPIN, CTL_JOB_KINDS };
#define CTL_JOB_KIND_NAMES { "load", "evict", "pin", "unpin" }
enum ctl_job_state { CTL_JOB_LISTING, CTL_JOB_RUNNING, CTL_JOB_DONE, CTL_JOB_CANCELLED,
		     CTL_JOB_FAILED, CTL_JOB_STATES };
#define CTL_JOB_STATE_NAMES { "listing", "running", "done", "cancelled", "failed" }

/*
 * The default control socket of the daemon of user `uid` mounted at mnt (an
 * absolute, resolved path): /run/cachefs/NAME.sock for root, else
 * $XDG_RUNTIME_DIR/cachefs/NAME.sock (for our own uid) or
 * /tmp/cachefs-UID/NAME.sock. NAME is mnt escaped as `systemd-escape
 * --path` does, so it matches the unit's instance (/mnt/data: mnt-data).
 * Returns 0, or -ENAMETOOLONG when the path would not fit a Unix socket
 * address (then set ctl_socket=).
 */
int ctl_socket_default(const char *mnt, uid_t uid, char *out, size_t len);

/*
 * Whether a control socket of user `owner` may live in directory `dir`:
 * it must be owner's (or root's) and nobody else may write to it, except
 * a sticky directory of root's (/tmp), where others cannot move what is
 * not theirs. With `create`, a missing directory is made with `mode`
 * first. Returns 0, or a negative errno with a one-line reason in err.
 */
int ctl_dir_check(const char *dir, uid_t owner, int create, mode_t mode, char *err, size_t errlen);

/*
 * s as a JSON string. Names from a source need not be UTF-8, which JSON
 * strings must be: then every byte above 0x7f is written \xNN instead.
 */
json_t *ctl_json_text(const char *s);

#endif
