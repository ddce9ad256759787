//go:build cgo && amd64

package cgocb

/*
extern void cgocbCallback(void);

// callWithBadFP calls into Go with 0x16 in the frame pointer register, as
// a C caller compiled without frame pointers may leave any value there.
static void callWithBadFP(void) {
	__asm__ volatile(
		"push %%rbp\n\t"
		"push %%rbx\n\t"
		"mov $0x16, %%rbp\n\t"
		"call cgocbCallback\n\t"
		"pop %%rbx\n\t"
		"pop %%rbp\n\t"
		::: "memory", "cc", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
		"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
		"xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}
*/
import "C"

var fn func()

//export cgocbCallback
func cgocbCallback() { fn() }

// Run calls f from C, with a garbage frame pointer in the C frame below
// it. Not safe for concurrent use.
func Run(f func()) {
	fn = f
	C.callWithBadFP()
	fn = nil
}
