//go:build hardened || asan

package hardened

import (
	"fmt"
	"runtime/pprof"
	"sync"
)

// profiles are the live-block profiles hardened allocators have made, by
// name. runtime/pprof cannot unregister a profile, so a closed
// allocator's profile stays, empty (Close removes every block it
// reports as leaked), and a later allocator of the same name takes it
// over: a test run with -count=2, or a program that closes and reopens a
// store, gets its profile back instead of an error.
var profiles struct {
	mu     sync.Mutex
	byName map[string]*liveProfile
}

type liveProfile struct {
	p     *pprof.Profile
	inUse bool
}

// takeProfile returns the profile name for a new allocator: a new one,
// or the one a closed allocator left. A profile another live allocator
// uses, or one hardalloc did not make, is an error.
func takeProfile(name string) (*pprof.Profile, error) {
	profiles.mu.Lock()
	defer profiles.mu.Unlock()
	if lp := profiles.byName[name]; lp != nil {
		if lp.inUse {
			return nil, fmt.Errorf("pprof profile %q is another open allocator's", name)
		}
		if n := lp.p.Count(); n != 0 {
			return nil, fmt.Errorf("pprof profile %q still holds %d blocks of a closed allocator", name, n)
		}
		lp.inUse = true
		return lp.p, nil
	}
	if pprof.Lookup(name) != nil {
		return nil, fmt.Errorf("pprof profile %q already exists", name)
	}
	if profiles.byName == nil {
		profiles.byName = make(map[string]*liveProfile)
	}
	lp := &liveProfile{p: pprof.NewProfile(name), inUse: true}
	profiles.byName[name] = lp
	return lp.p, nil
}

// releaseProfile gives a closing allocator's profile up for the next
// allocator of its name.
func releaseProfile(name string) {
	profiles.mu.Lock()
	defer profiles.mu.Unlock()
	if lp := profiles.byName[name]; lp != nil {
		lp.inUse = false
	}
}
