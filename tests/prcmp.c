/*
 * prcmp A B [THREADS] [READS] [MAXLEN]: THREADS threads each do READS preads
 * of random offset and length (up to MAXLEN) on both files and compare the
 * bytes. Exits 0 when every read matched, 1 on the first difference.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fa, fb;
static off_t size;
static long reads, maxlen;
static atomic_int bad;

static void *run(void *arg)
{
	uint64_t s = 0x2545F4914F6CDD1DULL * ((uintptr_t)arg + 1);
	char *a = malloc((size_t)maxlen), *b = malloc((size_t)maxlen);

	for (long i = 0; i < reads && !atomic_load(&bad); i++) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		off_t off = (off_t)(s % (uint64_t)(size + 1));
		size_t len = (size_t)((s >> 20) % (uint64_t)maxlen) + 1;
		ssize_t na = pread(fa, a, len, off), nb = pread(fb, b, len, off);
		if (na != nb || (na > 0 && memcmp(a, b, (size_t)na))) {
			fprintf(stderr, "prcmp: differ at offset %lld length %zu (%zd vs %zd bytes)\n",
				(long long)off, len, na, nb);
			atomic_store(&bad, 1);
		}
	}
	free(a);
	free(b);
	return NULL;
}

int main(int argc, char **argv)
{
	struct stat st;
	int threads = argc > 3 ? atoi(argv[3]) : 8;
	pthread_t t[256];

	reads = argc > 4 ? atol(argv[4]) : 2000;
	maxlen = argc > 5 ? atol(argv[5]) : 3 << 20;
	if (argc < 3 || threads < 1 || threads > 256) {
		fprintf(stderr, "usage: prcmp A B [THREADS] [READS] [MAXLEN]\n");
		return 2;
	}
	fa = open(argv[1], O_RDONLY);
	fb = open(argv[2], O_RDONLY);
	if (fa < 0 || fb < 0 || fstat(fa, &st) < 0) {
		perror("open");
		return 2;
	}
	size = st.st_size;
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, run, (void *)(uintptr_t)i);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	return atomic_load(&bad) ? 1 : 0;
}
