/*
 * Which node of a cluster owns a stripe of a file: rendezvous (highest
 * random weight) hashing. Every node, and the Python client
 * (clients/python/cachefs_fsspec/placement.py), computes the same owner
 * from the same member names, with no state shared beyond the list.
 *
 * Why rendezvous rather than a ring of virtual nodes: removing or adding
 * one node of N moves exactly the stripes that node wins or loses, about
 * 1/N of them, with no virtual-node count to tune for balance; the second
 * best score is the natural fallback when the owner is down; and it is
 * a few lines both here and in Python. A lookup costs one hash per member,
 * which is nothing next to a 4 MiB stripe for the clusters this is for
 * (tens to hundreds of nodes).
 *
 * score(node, fid, stripe) = mix64(node_hash ^ mix64(fid * 0x9e3779b97f4a7c15 + stripe))
 * node_hash = the first 8 bytes, big-endian, of SHA-256(node name)
 * with mix64 the splitmix64 finaliser (core/util.h). The highest score
 * owns the stripe; equal scores (never seen) go to the lower name.
 */
#ifndef CACHEFS_PLACEMENT_H
#define CACHEFS_PLACEMENT_H

#include <stdbool.h>
#include <stdint.h>

#define PL_NAME_MAX 128   /* a member's name: its page server's "HOST:PORT" */

struct placement;

/*
 * An immutable member list from `n` names (copied; duplicates count once),
 * sorted by name. `self` names this node among them, or is NULL. Returns 0,
 * -EINVAL for an empty or too long name, or -ENOMEM.
 */
int placement_create(struct placement **out, const char *const *names, unsigned n, const char *self);
void placement_free(struct placement *pl);

unsigned placement_count(const struct placement *pl);
const char *placement_name(const struct placement *pl, unsigned i);
uint64_t placement_hash(const struct placement *pl, unsigned i);
/* This node's index, or -1 when it is not a member. */
int placement_self(const struct placement *pl);
/* Whether two lists name the same members. */
bool placement_same(const struct placement *a, const struct placement *b);

uint64_t placement_node_hash(const char *name);
uint64_t placement_score(uint64_t node_hash, uint64_t fid, uint64_t stripe);
/*
 * The members in order of preference for stripe `stripe` of file `fid`
 * (the page key's file): order[0] owns it, order[1] is where to go when
 * the owner fails. Fills at most `max`; returns how many (0 for an empty
 * list).
 */
unsigned placement_rank(const struct placement *pl, uint64_t fid, uint64_t stripe, unsigned *order,
			unsigned max);
/* order[0] of placement_rank: the owner's index; the list must not be empty. */
unsigned placement_owner(const struct placement *pl, uint64_t fid, uint64_t stripe);

#endif
