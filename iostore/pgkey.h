/* The identity of a cached page, shared by the RAM tier and the SSD store. */
#ifndef CACHEFS_PGKEY_H
#define CACHEFS_PGKEY_H

#include <stdint.h>

struct pgkey {
	uint64_t file;   /* file identity, including its version */
	uint64_t index;  /* page number within the file */
};

#endif
