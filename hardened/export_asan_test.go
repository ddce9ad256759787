//go:build asan

package hardened

// NoWatcher leaves every ASan report to the reporter process, as when a
// stop-the-world keeps the watcher from running (call it before the first
// allocator is made).
func NoWatcher() { asanNoWatcher = true }
