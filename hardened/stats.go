//go:build !asan

package hardened

// Stats is a snapshot of the allocator's accounting. Under concurrent use
// the counters are each exact but not taken at one instant.
type Stats struct {
	Requested  int64 // bytes requested by live blocks
	Mapped     int64 // readable bytes mapped: committed slabs and large blocks
	LiveBlocks int64 // blocks allocated and not yet freed (small and large)
	LargeLive  int64 // of which large
	// LargeCached is the bytes of freed large blocks kept mapped for
	// reuse (Options.LargeCacheBytes); they are part of Mapped.
	LargeCached int64
	// Sampled is the number of live sampled blocks (Options.SampleRate),
	// counted in LiveBlocks too; each maps one page.
	Sampled int64
	// Quarantined is the number of freed blocks held back from reuse
	// (hardened builds), and QuarantinedBytes their slot bytes.
	Quarantined      int64
	QuarantinedBytes int64
	Classes          []ClassStats // one per size class
}

// ClassStats counts one size class.
type ClassStats struct {
	Size   int   // payload capacity of the class
	Allocs int64 // total allocations
	Frees  int64 // total frees
	Live   int64 // Allocs - Frees
	Slabs  int64 // slabs carved
}

// Stats returns current counters.
func (a *Allocator) Stats() Stats {
	var s Stats
	a.readStats(&s)
	return s
}

// readStats fills s with current counters, as Stats returns them, reusing
// s.Classes: fuzz harnesses compare the accounting with their model after
// every batch of operations, and Stats allocates a fresh slice each time.
func (a *Allocator) readStats(s *Stats) {
	classes := s.Classes
	if cap(classes) < numClasses {
		classes = make([]ClassStats, numClasses)
	}
	classes = classes[:numClasses]
	*s = Stats{Mapped: a.mapped.Load(), Classes: classes}
	for c := range classes {
		classes[c] = ClassStats{Size: int(classSize[c]), Slabs: int64(a.loc[c].committed.Load() >> classSlabShift[c])}
	}
	var buf [numClasses]uint8
	counted := a.countedClasses(&buf)
	for _, pc := range a.allCaches() {
		pc.lockForRead()
		var allocs, frees [numClasses]int64
		var req int64
		for {
			// A fold moves counts between words: read around none.
			g := pc.foldGen.Load()
			req = pc.requested
			for _, c := range counted {
				var r int64
				allocs[c], frees[c], r = pc.counts(int(c))
				req += r
			}
			if g%2 == 0 && pc.foldGen.Load() == g {
				break
			}
		}
		for _, c := range counted {
			classes[c].Allocs += allocs[c]
			classes[c].Frees += frees[c]
		}
		s.Requested += req
		pc.unlockForRead()
	}
	for c := range classes {
		cs := &classes[c]
		cs.Live = cs.Allocs - cs.Frees
		s.LiveBlocks += cs.Live
	}
	a.large.mu.Lock()
	s.LargeLive = int64(len(a.large.live))
	s.LargeCached = a.large.cacheBytes
	a.large.mu.Unlock()
	s.LiveBlocks += s.LargeLive
	if a.samp != nil {
		a.samp.mu.Lock()
		for i := range a.samp.blocks {
			if a.samp.blocks[i].live {
				s.Sampled++
			}
		}
		a.samp.mu.Unlock()
		s.LiveBlocks += s.Sampled
	}
	s.Quarantined, s.QuarantinedBytes = a.quarantineStats()
}

// countedClasses returns, in buf, the classes whose per-P counts may be
// non-zero: class 0 (hardened builds count 0-byte blocks, which take no
// slot, there) and the classes that handed out a slot since New or Reset.
// The others' are zero: Reset clears them, and only a slot handed out is
// allocated, then freed.
func (a *Allocator) countedClasses(buf *[numClasses]uint8) []uint8 {
	handed := a.handedList(buf) // in order: class 0 first if it is there
	if len(handed) > 0 && handed[0] == 0 {
		return handed
	}
	copy(buf[1:], handed) // class 0 was not handed, so there is room
	buf[0] = 0
	return buf[:len(handed)+1]
}
