package fuzz

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
)

// The overlap check is exact and incremental: every block is checked
// against every live block as it becomes live (checkNew, bulkAlloc), so no
// two live blocks ever overlap unnoticed, and no operation pays for the
// whole live set. (Sorting every span after every bulk op made a program's
// cost quadratic in its bulk ops; a program of 250 of them took 76 ms.)
//
// The slots and orphans are few and are looked at directly. The bulk set,
// up to bulkMax blocks, is a bitmap of the 16-byte granules its blocks
// cover: the allocator aligns every block to 16 bytes, so two blocks
// share a granule exactly when they overlap.

// granules is a sparse bitmap of 16-byte granules, by 4 KiB page. A
// page's words are updated in place (one map lookup, not a lookup and a
// store), and a page stays in the map, emptied, until reset.
type granules struct {
	m    map[uintptr]*[4]uint64
	free []*[4]uint64 // the pages reset dropped, for reuse
}

// update sets (or, with set false, clears) the granules [s, e) covers and
// reports whether any of them was set before.
func (g *granules) update(s, e uintptr, set bool) (hit bool) {
	if g.m == nil {
		g.m = make(map[uintptr]*[4]uint64)
	}
	for lo, hi := s>>4, (e+15)>>4; lo < hi; {
		page := lo >> 8
		end := min(hi, (page+1)<<8)
		v := g.m[page]
		if v == nil {
			if !set {
				lo = end
				continue
			}
			if n := len(g.free); n > 0 {
				v, g.free = g.free[n-1], g.free[:n-1]
			} else {
				v = new([4]uint64)
			}
			g.m[page] = v
		}
		for x := lo; x < end; {
			w, b := x&255>>6, x&63
			n := min(end-x, 64-b)
			mask := ^uint64(0) >> (64 - n) << b
			hit = hit || v[w]&mask != 0
			if set {
				v[w] |= mask
			} else {
				v[w] &^= mask
			}
			x += n
		}
		lo = end
	}
	return hit
}

// any reports whether a granule of [s, e) is set.
func (g *granules) any(s, e uintptr) bool {
	for lo, hi := s>>4, (e+15)>>4; lo < hi; {
		page := lo >> 8
		end := min(hi, (page+1)<<8)
		if v := g.m[page]; v != nil {
			for x := lo; x < end; {
				w, b := x&255>>6, x&63
				n := min(end-x, 64-b)
				if v[w]&(^uint64(0)>>(64-n)<<b) != 0 {
					return true
				}
				x += n
			}
		}
		lo = end
	}
	return false
}

// reset clears every granule.
func (g *granules) reset() {
	for _, v := range g.m {
		*v = [4]uint64{}
		g.free = append(g.free, v)
	}
	clear(g.m)
}

// overlap returns a description of the live block that [s, e) overlaps,
// or "" if none does.
func (r *runner) overlap(s, e uintptr) string {
	if o := r.overlapSlots(s, e); o != "" {
		return o
	}
	if r.granules.any(s, e) {
		return r.bulkOverlapping(s, e)
	}
	return ""
}

// overlapSlots is overlap for the slots, by a loop over those holding a
// block, and the orphans (which only accumulate; a long program can
// leave a hundred) by binary search: they do not overlap, so sorted by
// start they are sorted by end too.
func (r *runner) overlapSlots(s, e uintptr) string {
	for m := r.held; m != 0; m &= m - 1 {
		if o := r.slots[bits.TrailingZeros16(m)]; s < o.end() && o.start() < e {
			return fmt.Sprintf("live block [%#x,%#x)", o.start(), o.end())
		}
	}
	if len(r.orphans) == 0 {
		return ""
	}
	k, _ := slices.BinarySearchFunc(r.orphans, s, func(o *block, s uintptr) int { return cmp.Compare(o.end(), s+1) })
	if k < len(r.orphans) && r.orphans[k].start() < e {
		o := r.orphans[k]
		return fmt.Sprintf("leaked block [%#x,%#x)", o.start(), o.end())
	}
	return ""
}

// bulkOverlapping describes the bulk block a granule of [s, e) is set
// for (a failure path: a linear search).
func (r *runner) bulkOverlapping(s, e uintptr) string {
	for _, bb := range r.bulk {
		if bs, be := bb.span(); s < be && bs < e {
			return fmt.Sprintf("bulk block [%#x,%#x)", bs, be)
		}
	}
	return "a granule of the bulk set's index (no bulk block holds it: the index is wrong)"
}
