// workload: the C half of hardalloc's anchor measurement (bench/anchor).
// The same two workloads as ../cmd/goside, with the same loop shapes,
// sizes, random sequence and output, so that a C allocator loaded with
// LD_PRELOAD and hardalloc are timed on identical work:
//
//	workload pair  T_ms    an n-byte malloc+free pair, touching byte 0,
//	                       for n in 16 64 256 4096 65536
//	workload mixed STEPS   8192 live slots; each step frees one at random
//	                       and allocates a log-uniform size (16 B..64 KiB),
//	                       touching one byte per 4 KiB
//	... calloc             either, with calloc(1, n) for malloc(n)
//
// Times are CPU ns (this process, user + system) per pair or step: the
// machines are shared, and CPU time holds up under load better than wall
// time. Output lines: "pair N NS" and "mixed NS RSS_OVER_LIVE", where
// RSS is the peak resident set less the resident set before the workload
// began (the program's and runtime's own share) and LIVE the peak of the
// bytes the workload held.
//
// Built with -fno-builtin so the compiler keeps every malloc/free call.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { batch = 1000, slots = 8192 };

static void *volatile sink;

// calloc instead of malloc (a third argument "calloc"): the allocator
// then zeroes every block, as hardalloc's Alloc does.
static int zeroed;

static void *alloc(size_t n) { return zeroed ? calloc(1, n) : malloc(n); }

static int64_t cpu_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((noinline)) static void pairs(size_t n) {
	for (int i = 0; i < batch; i++) {
		char *p = alloc(n);
		p[0] = (char)i;
		sink = p;
		free(p);
	}
}

// Batches until t_ns of CPU time have passed, after a warm-up batch.
static double pair_ns(size_t n, int64_t t_ns) {
	pairs(n);
	int64_t c0 = cpu_ns(), c, k = 0;
	do {
		pairs(n);
		k++;
	} while ((c = cpu_ns() - c0) < t_ns);
	return (double)c / (double)(k * batch);
}

// splitmix64, seeded 42: the Go side draws the same sequence.
static uint64_t rng = 42;
static uint64_t next(void) {
	uint64_t z = (rng += 0x9e3779b97f4a7c15);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
	return z ^ (z >> 31);
}

// Log-uniform over [16, 65536): an octave [2^e, 2^(e+1)), e uniform in
// 4..15, then a size uniform within it.
static size_t mixed_size(void) {
	uint64_t r = next();
	int e = 4 + (int)(r % 12);              // the power of two below
	size_t lo = (size_t)1 << e;
	return lo + (size_t)((r >> 8) % lo);     // uniform within [lo, 2lo)
}

static void touch(char *p, size_t n) {
	for (size_t i = 0; i < n; i += 4096)
		p[i] = 1;
	p[n - 1] = 1;
}

static long peak_rss(void) {
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss * 1024L;
}

// The resident set now (/proc/self/statm), before the workload: what the
// program, its runtime and the allocator's start-up cost, subtracted from
// the peak so the ratio charges the allocator only for the workload.
static long rss_now(void) {
	long size, res;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f || fscanf(f, "%ld %ld", &size, &res) != 2)
		return 0;
	fclose(f);
	return res * sysconf(_SC_PAGESIZE);
}

static void mixed(long steps) {
	static char *p[slots];
	static size_t sz[slots];
	size_t live = 0, peak = 0;
	long base = rss_now();
	for (int i = 0; i < slots; i++) {
		sz[i] = mixed_size();
		p[i] = alloc(sz[i]);
		touch(p[i], sz[i]);
		live += sz[i];
	}
	peak = live;
	int64_t c0 = cpu_ns();
	for (long s = 0; s < steps; s++) {
		int i = (int)(next() % slots);
		free(p[i]);
		live -= sz[i];
		sz[i] = mixed_size();
		p[i] = alloc(sz[i]);
		touch(p[i], sz[i]);
		live += sz[i];
		if (live > peak)
			peak = live;
	}
	double ns = (double)(cpu_ns() - c0) / (double)steps;
	printf("mixed %.1f %.3f\n", ns, (double)(peak_rss() - base) / (double)peak);
	for (int i = 0; i < slots; i++)
		free(p[i]);
}

int main(int argc, char **argv) {
	if (argc != 3 && !(argc == 4 && strcmp(argv[3], "calloc") == 0)) {
		fprintf(stderr, "usage: workload pair T_ms | mixed STEPS [calloc]\n");
		return 2;
	}
	zeroed = argc == 4;
	long arg = atol(argv[2]);
	if (strcmp(argv[1], "pair") == 0) {
		static const size_t sizes[] = {16, 64, 256, 4096, 65536};
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
			printf("pair %zu %.2f\n", sizes[i], pair_ns(sizes[i], arg * 1000000L));
	} else if (strcmp(argv[1], "mixed") == 0) {
		mixed(arg);
	} else {
		fprintf(stderr, "unknown workload %s\n", argv[1]);
		return 2;
	}
	return 0;
}
