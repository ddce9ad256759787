package bench

// #include <stdlib.h>
import "C"

import "unsafe"

func cMalloc(n int) unsafe.Pointer { return C.malloc(C.size_t(n)) }
func cFree(p unsafe.Pointer)       { C.free(p) }
