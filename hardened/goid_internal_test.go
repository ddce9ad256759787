package hardened

import (
	"sync"
	"testing"
)

func TestGoidMatchesRuntime(t *testing.T) {
	goid()
	if goidOffset.Load() < 0 {
		t.Logf("goid calibration unavailable here: using the slow path")
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g, s := goid(), slowGoid(); g != s || g == 0 {
				t.Errorf("goid %d, runtime says %d", g, s)
			}
		}()
	}
	wg.Wait()
}

func BenchmarkGoid(b *testing.B) {
	for b.Loop() {
		goid()
	}
}
