/* Small helpers shared by every module. */
#ifndef CACHEFS_UTIL_H
#define CACHEFS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifndef STATIC
#define STATIC static
#endif

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

static inline bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

static inline uint64_t mix64(uint64_t x)
{
	/* splitmix64 finaliser: cheap, well-spread shard and bucket choice. */
	x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27; x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Adds n counters of src to dst: for stats structs made only of uint64_t. */
static inline void sum_u64(uint64_t *dst, const uint64_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] += src[i];
}

/*
 * Parses a byte size: a number with an optional K, M, G or T suffix (powers
 * of 1024, an optional trailing "B" or "iB" allowed). Returns 0 and sets *out,
 * or -EINVAL for anything else (empty, negative, junk, overflow).
 */
int parse_size(const char *s, uint64_t *out);
/* Formats a byte count as "1.5G" style into buf; returns buf. */
const char *fmt_size(uint64_t v, char *buf, size_t len);
/* Parses a non-negative decimal (fraction allowed) number of seconds. */
int parse_seconds(const char *s, double *out);
/* a + b, or UINT64_MAX when that does not fit (deadlines of "forever"). */
static inline uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Seconds as nanoseconds, UINT64_MAX for what does not fit. */
static inline uint64_t secs_to_ns(double s)
{
	return s >= 1.8e10 ? UINT64_MAX : s <= 0 ? 0 : (uint64_t)(s * 1e9);
}
/* Parses an unsigned integer in [min, max]. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * Normalises a slash-separated path in place: "/a//b/" -> "a/b" (no leading
 * or trailing '/'; "" for the root). *dir tells whether it ended in '/'.
 * Returns -EINVAL for a "." or ".." part, leaving p as it was.
 */
int path_clean(char *p, bool *dir);

struct sockaddr_storage;
/*
 * "HOST:PORT" (IPv4 numbers), "[V6]:PORT", or ":PORT" (every address) into
 * *ss; its length in *len. -EINVAL when it is none of those.
 */
int parse_sockaddr(const char *spec, struct sockaddr_storage *ss, unsigned *len);
/* Whether a listening socket could be bound at ss (SO_REUSEADDR, as servers do): 0 or -errno. */
int sockaddr_bindable(const struct sockaddr_storage *ss, unsigned len);

struct timespec;
/* CLOCK_REALTIME `ns` from now, for pthread_cond_timedwait. */
void realtime_after(struct timespec *ts, uint64_t ns);

/* snprintf into a message buffer, cut to fit: for messages, where a cut is fine. */
__attribute__((format(printf, 3, 4)))
void msgf(char *buf, size_t len, const char *fmt, ...);

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);
/* CLOCK_REALTIME in ns: wall-clock times that outlive the process (files, objects, pages). */
uint64_t realtime_ns(void);
/* mkdir -p: path and its missing parents, each with mode. 0 or -errno. */
int mkdir_p(const char *path, unsigned mode);
/* Total and available physical memory in bytes, from /proc/meminfo. */
int mem_info(uint64_t *total, uint64_t *avail);

#endif
