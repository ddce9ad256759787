package hardened

import "runtime/debug"

func setPanicOnFault(on bool) bool { return debug.SetPanicOnFault(on) }
