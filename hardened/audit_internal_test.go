package hardened

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/hardalloc/hardalloc/internal/ctl"
	"github.com/hardalloc/hardalloc/redzone"
)

// Audit passes after a workload that fills and drains the per-P caches,
// spills, quarantines and Resets, and finds a slot put in two free lists
// or dropped from all of them (what a flush or refill bug would do).
func TestAuditConservation(t *testing.T) {
	a, err := New(Options{Seed: 8, OnReport: func(r *Report) { t.Errorf("report:\n%s", r) }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var live [][]byte
	for round := range 3 {
		for i := range 3000 {
			live = append(live, allocT(t, a, 16+(i*97+round)%3000))
		}
		for i := len(live) - 1; i >= 0; i -= 2 {
			a.Free(live[i])
			live = append(live[:i], live[i+1:]...)
		}
		if err := a.auditSlots(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	for _, b := range live {
		a.Free(b)
	}
	if err := a.auditSlots(); err != nil {
		t.Fatal(err)
	}

	// A free slot pushed twice: in a P's cache and in the bitmap.
	b := allocT(t, a, 100)
	a.Free(b)
	_, c, off, _ := a.locate(addrOf(b) - uintptr(a.base))
	pc := a.spare // used only when GOMAXPROCS grows: room to push into
	pc.free[c][pc.n[c]] = off
	pc.n[c]++
	if Enabled {
		pc.n[c]-- // hardened: b is quarantined, so the push is the only copy...
		pc.free[c][pc.n[c]] = off
		pc.n[c]++ // ...and a quarantined slot in a free list is the bug
	}
	err = a.auditSlots()
	if err == nil || !strings.Contains(err.Error(), "places") && !strings.Contains(err.Error(), "free lists") {
		t.Fatalf("Audit after a double push: %v", err)
	}
	pc.n[c]--
	if err := a.auditSlots(); err != nil {
		t.Fatalf("Audit after undoing the double push: %v", err)
	}

	// A slot of a class that never handed one out, pushed into a cache
	// twice: the walk never visits it, and it is left over at the end.
	top := numClasses - 1
	pc.free[top][0], pc.free[top][1] = 0, 0
	pc.n[top] = 2
	err = a.auditSlots()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("class %d slot 0x0: in 2 per-P caches, but never handed out", top)) {
		t.Fatalf("Audit after pushing a never-handed slot: %v", err)
	}
	pc.n[top] = 0

	// A slot lost: taken from the central list and dropped.
	var one [1]uint32
	var cl *central
	for c = range numClasses {
		cl = &a.classes[c]
		cl.mu.Lock()
		k, _ := a.take(c, one[:], false, 0)
		cl.mu.Unlock()
		if k == 1 {
			break
		}
	}
	if c == numClasses {
		t.Fatal("no central list has a slot to take")
	}
	if err := a.auditSlots(); err == nil || !strings.Contains(err.Error(), "in 0") {
		t.Fatalf("Audit after losing a slot: %v", err)
	}
	cl.mu.Lock()
	a.put(c, one[:])
	cl.mu.Unlock()
}

// JunkFill dirties the payload of a never-used slot of a fresh slab as
// Alloc hands it out (its head and tail: fillJunk), before zeroing it,
// in every build; it leaves the other slots of the refill untouched, and
// after Reset, whose slabs keep their bytes, no slot is junked.
func TestJunkFill(t *testing.T) {
	a, err := newWith(Options{Seed: 2, OnReport: func(r *Report) { t.Errorf("report:\n%s", r) }}, ctl.Extra{JunkFill: 0xa5})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// For a short payload and one long enough for head and tail to
	// differ: the rest of the batch the Alloc took is in some P's cache,
	// never used and never touched; what Alloc does to the next one,
	// before it zeroes it, is junk the first junkHead and last junkTail
	// bytes of its payload (all of a short one).
	var b []byte
	var c int
	var off uint32
	for _, size := range []int{100, 4000} {
		b = allocT(t, a, size)
		if !isZeroT(b) {
			t.Fatalf("a new %d-byte block is not zeroed", size)
		}
		_, c, _, _ = a.locate(addrOf(b) - uintptr(a.base))
		var pc *cache
		for _, p := range a.allCaches() {
			for _, o := range p.free[c][:p.n[c]] {
				slot := a.slotAt(c, o)
				if loadHeader(slot) != 0 {
					t.Fatal("a never-used slot's header is not zero")
				}
				for _, i := range []uintptr{0, 49, uintptr(classSize[c]) - 1} {
					if got := peekByte(unsafe.Add(slot, headerSize+i)); got != 0 {
						t.Fatalf("byte %d of a never-used slot's body holds %#x before it is handed out", i, got)
					}
				}
				pc = p
			}
		}
		if pc == nil {
			t.Fatalf("no never-used slot of the %d-byte block's class is cached", size)
		}
		off = pc.free[c][pc.n[c]-1]
		slot := a.slotAt(c, off)
		n := size - 40
		a.junkPayload(slot, c, off, 32, n)
		for i := uintptr(0); i < uintptr(classSize[c]); i++ {
			want := byte(0)
			if p := int(i) - 32; p >= 0 && p < n && (p < junkHead || p >= n-junkTail) {
				want = 0xa5
			}
			if got := peekByte(unsafe.Add(slot, headerSize+i)); got != want {
				t.Fatalf("%d-byte payload: byte %d of the slot's body holds %#x, want %#x", n, i, got, want)
			}
		}
		body := unsafe.Add(slot, headerSize)
		redzone.Fill(slice(body, uintptr(classSize[c])), uintptr(body), 0) // as it was
		a.Free(b)
	}
	b = allocT(t, a, 100)
	_, c, off, _ = a.locate(addrOf(b) - uintptr(a.base))
	// After Reset the slabs hold the last program's bytes, not zeros from
	// the OS: nothing is junked there.
	a.Free(b)
	if err := a.reset(3); err != nil {
		t.Fatal(err)
	}
	if a.freshSlab(c, off) {
		t.Fatal("a slab Reset recycled still counts as fresh from the OS")
	}
	for range 100 {
		x := allocT(t, a, 100)
		if !isZeroT(x) {
			t.Fatal("a block is not zeroed")
		}
		a.Free(x)
	}
}

func isZeroT(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// A never-handed slot missing from its slab's bitmap (lost for good) is
// named by Audit, whichever word of the bitmap it is in.
func TestAuditMissingUnhandedSlot(t *testing.T) {
	for _, lose := range []uint32{1, 63, 64, 200} {
		a, err := New(Options{Seed: 7, OnReport: func(r *Report) {}})
		if err != nil {
			t.Fatal(err)
		}
		b := allocT(t, a, 16) // class 0: 512 slots a slab
		_, c, _, _ := a.locate(addrOf(b) - uintptr(a.base))
		cl := &a.classes[c]
		st := &cl.slabs[0]
		i := st.used + lose
		st.bits[i/64] &^= 1 << (i % 64)
		st.free--
		err = a.auditSlots()
		want := fmt.Sprintf("slot %#x: never handed out", i*(classSize[c]+headerSize))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("slot %d lost: Audit = %v, want %q", i, err, want)
		}
		st.bits[i/64] |= 1 << (i % 64)
		st.free++
		a.Free(b)
		a.Close()
	}
}

// sortKeys against slices.Sort: random keys with many duplicates, sorted
// and reversed runs, every length up to 200 (the insertion sort, the
// partition, and both recursion branches).
func TestSortKeys(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		for shape := range 4 {
			k := make([]uint64, n)
			for i := range k {
				switch shape {
				case 0:
					k[i] = r.Uint64()
				case 1:
					k[i] = r.Uint64N(4)
				case 2:
					k[i] = uint64(i)
				case 3:
					k[i] = uint64(n - i)
				}
			}
			want := slices.Clone(k)
			slices.Sort(want)
			sortKeys(k)
			if !slices.Equal(k, want) {
				t.Fatalf("n=%d shape %d: sortKeys gave %v, want %v", n, shape, k, want)
			}
		}
	}
}
