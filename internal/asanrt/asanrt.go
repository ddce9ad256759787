//go:build asan

// Package asanrt is hardalloc's only cgo: the calls into
// AddressSanitizer's runtime that -asan builds need: where its shadow
// memory is and a callback on every error report (package hardened), and
// what the shadow says of an address range (the fuzz layer's oracle).
package asanrt

/*
#cgo CFLAGS: -fsanitize=address
#cgo LDFLAGS: -fsanitize=address

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sanitizer/asan_interface.h>

struct ha_access { uint64_t addr, pc, sp, size, write; };

static int ha_req = -1, ha_rep = -1;

// ha_on_report runs after ASan has printed its report and before it
// aborts: it passes the access to the Go watcher and waits for it to print
// what hardalloc knows.
static void ha_on_report(const char *text) {
	struct ha_access a;
	memset(&a, 0, sizeof a);
	const char *s = strstr(text, " on address ");
	if (ha_req < 0 || s == NULL ||
	    sscanf(s, " on address %lx at pc %lx bp %*x sp %lx", &a.addr, &a.pc, &a.sp) < 1) {
		return;
	}
	const char *w = strstr(text, "WRITE of size ");
	const char *r = strstr(text, "READ of size ");
	if (w != NULL && (r == NULL || w < r)) {
		a.write = 1;
		sscanf(w, "WRITE of size %lu", &a.size);
	} else if (r != NULL) {
		sscanf(r, "READ of size %lu", &a.size);
	}
	ssize_t wr;
	do {
		wr = write(ha_req, &a, sizeof a);
	} while (wr < 0 && errno == EINTR);
	if (wr != (ssize_t)sizeof a) {
		return;
	}
	// Go preempts threads with signals (SIGURG), which end a poll early:
	// wait again until five seconds have passed in all.
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = 5000 - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
		struct pollfd p = { .fd = ha_rep, .events = POLLIN };
		if (left <= 0) {
			return;
		}
		int n = poll(&p, 1, (int)left);
		if (n == 1) {
			char c;
			(void)!read(ha_rep, &c, 1);
			return;
		}
		if (n < 0 && errno != EINTR) {
			return;
		}
	}
}

static int ha_poisoned(void *p) { return __asan_address_is_poisoned(p); }
static void *ha_region(void *p, size_t n) { return __asan_region_is_poisoned(p, n); }

static void ha_mapping(size_t *scale, size_t *offset) {
	__asan_get_shadow_mapping(scale, offset);
}

static void ha_install(int req, int rep) {
	ha_req = req;
	ha_rep = rep;
	__asan_set_error_report_callback(ha_on_report);
}
*/
import "C"

import "unsafe"

// ShadowMapping returns ASan's shadow scale and offset: the shadow byte of
// address p is at p>>scale + offset.
func ShadowMapping() (scale, offset uintptr) {
	var s, o C.size_t
	C.ha_mapping(&s, &o)
	return uintptr(s), uintptr(o)
}

// InstallReportCallback makes every ASan error report, once printed and
// before the process aborts, write the access (addr, pc, sp, size, write:
// five native-endian uint64) to the file descriptor req and wait up to
// five seconds for one byte on rep.
func InstallReportCallback(req, rep int) {
	C.ha_install(C.int(req), C.int(rep))
}

// Poisoned reports whether ASan considers the byte at p unaddressable
// (for tests of the shadow the allocator keeps).
func Poisoned(p unsafe.Pointer) bool { return C.ha_poisoned(p) != 0 }

// RegionPoisoned returns the first byte of [p, p+n) ASan considers
// unaddressable, or nil if every byte is addressable.
func RegionPoisoned(p unsafe.Pointer, n uintptr) unsafe.Pointer {
	return C.ha_region(p, C.size_t(n))
}
