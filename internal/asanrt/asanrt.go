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

// The fallback: a reporter process (package hardened's asan reporter)
// that explains the access when the Go watcher cannot answer. The
// message is the access and the goroutine's return addresses, walked
// here, in C, along the frame-pointer chain (see ha_stack).
enum { ha_depth = 64 };
struct ha_msg { uint64_t addr, size, write, n; uint64_t pcs[ha_depth]; };
static int ha_fb_req = -1, ha_fb_ack = -1;
static int ha_watch_ms = 5000;

// ha_state says who prints hardalloc's part of the report in progress, so
// that it is printed once: the watcher claims it (ha_claim) as it writes
// its text, the callback as it gives up waiting and asks the reporter.
enum { ha_idle, ha_waiting, ha_watcher, ha_fallback };
static int ha_state = ha_idle;

// ha_stack walks the accessing goroutine's frame-pointer chain from the
// stack pointer Go's asanread or asanwrite passed to ASan (their caller's,
// at the call): the call pushed the return address, pc, at sp-8, and their
// prologue saved the caller's frame pointer at sp-16. Anything that does
// not check gives pc alone. amd64 only (other frame layouts: pc alone).
static uint64_t ha_stack(uint64_t pc, uint64_t sp, uint64_t *pcs) {
	uint64_t n = 0;
	pcs[n++] = pc;
#if defined(__x86_64__)
	if (sp < 16 || *(uint64_t *)(sp - 8) != pc) {
		return n;
	}
	uint64_t prev = sp - 16, fp = *(uint64_t *)(sp - 16);
	while (fp > prev && fp - prev < (1u << 30) && (fp & 7) == 0 && n < ha_depth) {
		uint64_t ret = ((uint64_t *)fp)[1];
		if (ret == 0) {
			break;
		}
		pcs[n++] = ret;
		prev = fp;
		fp = *(uint64_t *)fp;
	}
#endif
	return n;
}

// ha_wait waits up to ms milliseconds for a byte on fd; Go preempts
// threads with signals (SIGURG), which end a poll early.
static int ha_wait(int fd, long ms) {
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = ms - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0) {
			return 0;
		}
		int n = poll(&p, 1, (int)left);
		if (n == 1) {
			char c;
			return read(fd, &c, 1) == 1;
		}
		if (n < 0 && errno != EINTR) {
			return 0;
		}
	}
}

static int ha_send(int fd, const void *p, size_t n) {
	ssize_t wr;
	do {
		wr = write(fd, p, n);
	} while (wr < 0 && errno == EINTR);
	return wr == (ssize_t)n;
}

// ha_on_report runs after ASan has printed its report and before it
// aborts: it passes the access to the Go watcher and waits for it to print
// what hardalloc knows.
static void ha_on_report(const char *text) {
	struct ha_access a;
	memset(&a, 0, sizeof a);
	const char *s = strstr(text, " on address ");
	if ((ha_req < 0 && ha_fb_req < 0) || s == NULL ||
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
	// The Go watcher first: it has everything (sites, OnReport). It needs
	// a P, which it cannot get while a stop-the-world waits for this
	// thread's, held here in C: then the reporter process explains the
	// access from what it can read, so the report is never lost.
	__atomic_store_n(&ha_state, ha_waiting, __ATOMIC_SEQ_CST);
	if (ha_req >= 0 && ha_send(ha_req, &a, sizeof a) && ha_wait(ha_rep, ha_watch_ms)) {
		return;
	}
	int st = ha_waiting;
	if (!__atomic_compare_exchange_n(&ha_state, &st, ha_fallback, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
		// The watcher has written its report: let OnReport finish.
		ha_wait(ha_rep, 2000);
		return;
	}
	if (ha_fb_req < 0) {
		return;
	}
	struct ha_msg m;
	memset(&m, 0, sizeof m);
	m.addr = a.addr;
	m.size = a.size;
	m.write = a.write;
	m.n = ha_stack(a.pc, a.sp, m.pcs);
	if (ha_send(ha_fb_req, &m, sizeof m)) {
		ha_wait(ha_fb_ack, 5000);
	}
}

// ha_claim makes the watcher the one that prints, unless the callback has
// given up on it; then it writes text to fd (if not -1) at once, in C, so
// that nothing between the claim and the text needs a P.
static int ha_claim(int fd, const char *p, size_t n) {
	int w = ha_waiting;
	if (!__atomic_compare_exchange_n(&ha_state, &w, ha_watcher, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
		return 0;
	}
	while (fd >= 0 && n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR) {
			continue;
		}
		if (k <= 0) {
			break;
		}
		p += k;
		n -= (size_t)k;
	}
	return 1;
}

static int ha_poisoned(void *p) { return __asan_address_is_poisoned(p); }
static void *ha_region(void *p, size_t n) { return __asan_region_is_poisoned(p, n); }

static void ha_mapping(size_t *scale, size_t *offset) {
	__asan_get_shadow_mapping(scale, offset);
}

static void ha_install(int req, int rep, int watch_ms, int fb_req, int fb_ack) {
	ha_req = req;
	ha_rep = rep;
	ha_watch_ms = watch_ms;
	ha_fb_req = fb_req;
	ha_fb_ack = fb_ack;
	__asan_set_error_report_callback(ha_on_report);
}
*/
import "C"

import (
	"time"
	"unsafe"
)

// ShadowMapping returns ASan's shadow scale and offset: the shadow byte of
// address p is at p>>scale + offset.
func ShadowMapping() (scale, offset uintptr) {
	var s, o C.size_t
	C.ha_mapping(&s, &o)
	return uintptr(s), uintptr(o)
}

// InstallReportCallback makes every ASan error report, once printed and
// before the process aborts, write the access (addr, pc, sp, size, write:
// five native-endian uint64) to the file descriptor req (if not -1) and
// wait up to watch for one byte on rep. Without that byte, it writes the
// access again to fbReq (if not -1) as a Fallback message, with the
// goroutine's return addresses walked in C, and waits up to five seconds
// for one byte on fbAck.
func InstallReportCallback(req, rep int, watch time.Duration, fbReq, fbAck int) {
	C.ha_install(C.int(req), C.int(rep), C.int(watch.Milliseconds()), C.int(fbReq), C.int(fbAck))
}

// Claim makes the caller, the watcher, the one that prints hardalloc's
// part of the report in progress, and writes text to fd at once (fd -1:
// the caller writes it). It returns false if the callback has given up
// waiting and asked the reporter process instead: then nothing may be
// printed.
func Claim(fd int, text string) bool {
	b := []byte(text)
	var p *C.char
	if len(b) > 0 {
		p = (*C.char)(unsafe.Pointer(&b[0]))
	}
	return C.ha_claim(C.int(fd), p, C.size_t(len(b))) != 0
}

// FallbackDepth is the most return addresses a Fallback message holds.
const FallbackDepth = C.ha_depth

// Fallback is the message InstallReportCallback's fallback writes: native
// endian, the access, then N return addresses.
type Fallback struct {
	Addr, Size, Write, N uint64
	PCs                  [FallbackDepth]uint64
}

// Poisoned reports whether ASan considers the byte at p unaddressable
// (for tests of the shadow the allocator keeps).
func Poisoned(p unsafe.Pointer) bool { return C.ha_poisoned(p) != 0 }

// RegionPoisoned returns the first byte of [p, p+n) ASan considers
// unaddressable, or nil if every byte is addressable.
func RegionPoisoned(p unsafe.Pointer, n uintptr) unsafe.Pointer {
	return C.ha_region(p, C.size_t(n))
}
