/*
 * Rendezvous hashing of stripes to cluster members (see placement.h for
 * the formula the Python client repeats).
 */
#include "config.h"
#include "cluster/placement.h"
#include "core/util.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

struct pl_member {
	char name[PL_NAME_MAX];
	uint64_t hash;
};

struct placement {
	unsigned n;
	int self;
	struct pl_member m[];
};

uint64_t placement_node_hash(const char *name)
{
	unsigned char d[SHA256_DIGEST_LENGTH];
	uint64_t h = 0;

	SHA256((const unsigned char *)name, strlen(name), d);
	for (int i = 0; i < 8; i++)
		h = h << 8 | d[i];
	return h;
}

uint64_t placement_score(uint64_t node_hash, uint64_t fid, uint64_t stripe)
{
	return mix64(node_hash ^ mix64(fid * 0x9e3779b97f4a7c15ULL + stripe));
}

static int cmp_member(const void *a, const void *b)
{
	return strcmp(((const struct pl_member *)a)->name, ((const struct pl_member *)b)->name);
}

int placement_create(struct placement **out, const char *const *names, unsigned n, const char *self)
{
	struct placement *pl = calloc(1, sizeof(*pl) + (size_t)n * sizeof(pl->m[0]));
	unsigned k = 0;

	if (!pl)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		size_t len = strlen(names[i]);
		if (!len || len >= PL_NAME_MAX) {
			free(pl);
			return -EINVAL;
		}
		memcpy(pl->m[k].name, names[i], len + 1);
		pl->m[k].hash = placement_node_hash(names[i]);
		k++;
	}
	qsort(pl->m, k, sizeof(pl->m[0]), cmp_member);
	pl->n = 0;
	for (unsigned i = 0; i < k; i++)
		if (!pl->n || strcmp(pl->m[pl->n - 1].name, pl->m[i].name))
			pl->m[pl->n++] = pl->m[i];
	pl->self = -1;
	for (unsigned i = 0; self && i < pl->n; i++)
		if (!strcmp(pl->m[i].name, self))
			pl->self = (int)i;
	*out = pl;
	return 0;
}

void placement_free(struct placement *pl)
{
	free(pl);
}

unsigned placement_count(const struct placement *pl) { return pl->n; }
const char *placement_name(const struct placement *pl, unsigned i) { return pl->m[i].name; }
int placement_self(const struct placement *pl) { return pl->self; }
uint64_t placement_hash(const struct placement *pl, unsigned i) { return pl->m[i].hash; }

bool placement_same(const struct placement *a, const struct placement *b)
{
	if (a->n != b->n)
		return false;
	for (unsigned i = 0; i < a->n; i++)
		if (strcmp(a->m[i].name, b->m[i].name))
			return false;
	return true;
}

unsigned placement_owner(const struct placement *pl, uint64_t fid, uint64_t stripe)
{
	unsigned best = 0;
	uint64_t top = placement_score(pl->m[0].hash, fid, stripe);

	/* Members are sorted by name, so ">" keeps the lower name on a tie. */
	for (unsigned i = 1; i < pl->n; i++) {
		uint64_t s = placement_score(pl->m[i].hash, fid, stripe);
		if (s > top) {
			top = s;
			best = i;
		}
	}
	return best;
}

unsigned placement_rank(const struct placement *pl, uint64_t fid, uint64_t stripe, unsigned *order,
			unsigned max)
{
	uint64_t score[64];
	unsigned k = 0;

	/* A partial selection: the callers want the owner and a fallback or two. */
	max = MIN(max, MIN(pl->n, 64u));
	for (unsigned i = 0; i < pl->n; i++) {
		uint64_t s = placement_score(pl->m[i].hash, fid, stripe);
		unsigned j = k < max ? k++ : max;
		if (j == max && (!max || s <= score[max - 1]))
			continue;
		if (j == max)
			j = max - 1;
		while (j > 0 && score[j - 1] < s) {
			score[j] = score[j - 1];
			order[j] = order[j - 1];
			j--;
		}
		score[j] = s;
		order[j] = i;
	}
	return k;
}
