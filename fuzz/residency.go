package fuzz

import (
	"runtime"
	"sync"

	"github.com/hardalloc/hardalloc/hardened"
	"github.com/hardalloc/hardalloc/internal/harness"
)

// The quarantine-residency oracle (hardened builds). A freed small block
// waits in the quarantine, under a byte budget shared by the per-P
// shards, and nothing leaves a shard before the shard holds more than its
// share of the budget. A program starts with an empty quarantine (Reset
// empties it), so while the program has freed fewer bytes than one share
// (less the largest slot), no slot it freed may be handed out again. The
// model checks exactly that, where it knows every free: the default
// budget, no Limit (whose out-of-memory path drains the quarantine), no
// threads (whose frees it does not see), no misuse yet.

type residency struct {
	on    bool
	bytes int64            // slot bytes freed since the program (or its last Reset) began
	freed map[uintptr]bool // slots freed since then
	held  [][]byte         // -asan builds: the blocks freed since then, poisoned while held (shadow_asan.go)
}

// residencyWindow is one shard's share of the default 4 MiB budget, as
// New splits it (quarantineBudget, pendCap, sharedQuarantineBudget), less
// the largest slot: 0 (no check) where the share is smaller.
var residencyWindow = func() int64 {
	const budget = 4 << 20
	n := int64(max(runtime.GOMAXPROCS(0), runtime.NumCPU()) + 1)
	pend := min(budget/8/n, 32<<10)
	return max(0, (budget-pend*n)/n-int64(hardened.MaxSmall)-harness.HeaderSize)
}()

// slotBytes is each class's slot size (payload capacity and header),
// read once from the Stats of the first allocator that asks: the classes
// are the same for every allocator.
var slotBytes struct {
	once sync.Once
	n    []int64
}

func (r *runner) slotSize(c int) int64 {
	slotBytes.once.Do(func() {
		for _, cs := range r.a.Stats().Classes {
			slotBytes.n = append(slotBytes.n, int64(cs.Size)+harness.HeaderSize)
		}
	})
	return slotBytes.n[c]
}

// startResidency arms the oracle for a program (and after a Reset).
func (r *runner) startResidency() {
	q := &r.resid
	q.on = hardened.Enabled && r.opts.QuarantineBytes == 0 && r.opts.Limit == 0 && residencyWindow > 0
	q.bytes = 0
	if q.freed == nil {
		q.freed = make(map[uintptr]bool)
	}
	clear(q.freed)
	clear(q.held)
	q.held = q.held[:0]
}

// slotOf is the slot of the live small block b and its class, or false.
func (r *runner) slotOf(b []byte) (uintptr, int, bool) {
	l, ok := harness.LayoutOf(r.a, b)
	if !ok || l.Large || l.Zero || l.Sampled || l.Class < 0 || len(b) == 0 && l.Offset == 0 {
		return 0, 0, false
	}
	return addrOf(b) - uintptr(l.Offset), l.Class, true
}

// noteFree records the free of the model's live block b, just before it.
func (r *runner) noteFree(b []byte) {
	q := &r.resid
	if !q.on || b == nil {
		return
	}
	if s, c, ok := r.slotOf(b); ok {
		q.freed[s] = true
		q.bytes += r.slotSize(c)
		if asanBuild && q.bytes < residencyWindow {
			q.held = append(q.held, b)
		}
	}
}

// checkReuse fails if the new block b took a slot freed in this program
// while nothing could have left the quarantine yet.
func (r *runner) checkReuse(i int, b []byte) error {
	q := &r.resid
	if !q.on || r.misused != nil || q.bytes >= residencyWindow {
		return nil
	}
	if s, _, ok := r.slotOf(b); ok && q.freed[s] {
		return r.fail(i, "quarantine residency: a %d-byte block took slot %#x, freed earlier in this program, after only %d bytes of frees; nothing may leave the quarantine before %d",
			len(b), s, q.bytes, residencyWindow)
	}
	return nil
}
