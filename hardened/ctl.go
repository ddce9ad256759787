package hardened

import "github.com/hardalloc/hardalloc/internal/ctl"

// The controls only the module's harnesses use (fuzz, thread, the tests)
// reach the allocator through package ctl's hooks, not through its API:
// package harness gives them their types.
func init() {
	ctl.New = func(opts any, x ctl.Extra) (any, error) { return newWith(opts.(Options), x) }
	ctl.Reset = func(a any, seed uint64) error { return a.(*Allocator).reset(seed) }
	ctl.ResetWith = func(a, opts any, x ctl.Extra) error { return a.(*Allocator).resetWith(opts.(Options), x) }
	ctl.Audit = func(a any) error { return a.(*Allocator).auditSlots() }
	ctl.LayoutOf = func(a any, b []byte) (ctl.Layout, bool) { return a.(*Allocator).layoutOf(b) }
	ctl.Quarantined = func(a any, b []byte) bool { return a.(*Allocator).quarantinedAt(b) }
	ctl.Released = func(a any, b []byte) bool { return a.(*Allocator).releasedAt(b) }
	ctl.SlotLive = func(a any, b []byte) bool { return a.(*Allocator).slotLiveAt(b) }
	ctl.SiteRecord = func(a any, b []byte) []byte { return a.(*Allocator).siteRecordOf(b) }
	ctl.ReadStats = func(a, s any) { a.(*Allocator).readStats(s.(*Stats)) }
	ctl.Hold = func(a any) func() { return a.(*Allocator).hold() }
	ctl.AlwaysQuarantine = func(a any, n int) { a.(*Allocator).alwaysQuarantine(n) }
	ctl.Settle = func(a any) { a.(*Allocator).settle() }
}
