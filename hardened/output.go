package hardened

import (
	"io"
	"os"
	"strings"
)

// This file owns what the allocator prints by itself: the default
// OnReport's report and the leak list of Close. Everything else is
// returned or handed to OnReport.

// output is Options.ReportOutput with its default applied.
func (a *Allocator) output() io.Writer {
	if a.opts.ReportOutput != nil {
		return a.opts.ReportOutput
	}
	return os.Stderr
}

// print writes s to the report output in one call, so reports from
// concurrent goroutines do not interleave line by line.
func (a *Allocator) print(s string) { io.WriteString(a.output(), s) }

// maxPrintedLeaks bounds how many leak reports Close prints in full; the
// rest are counted in its summary line (all are returned).
const maxPrintedLeaks = 20

// printLeaks prints the leaks Close found (none when OnReport is set: it
// received them), the first maxPrintedLeaks in full, then one summary line
// in LeakSanitizer's style.
func (a *Allocator) printLeaks(leaks []*Report) {
	if len(leaks) == 0 {
		return
	}
	var b strings.Builder
	var bytes int
	for i, r := range leaks {
		bytes += max(r.Size, 0)
		if i < maxPrintedLeaks {
			b.WriteString(r.String())
		}
	}
	if n := len(leaks) - maxPrintedLeaks; n > 0 {
		b.WriteString("... and " + plural(n, "more leak") + " (not printed)\n")
	}
	b.WriteString("SUMMARY: hardalloc: " + plural(bytes, "byte") + " leaked in " +
		plural(len(leaks), "allocation") + " at Close\n")
	a.print(b.String())
}

// caught captures the goroutine and stack of the allocator call that is
// reporting, for Report.Caught (the report path only).
func (a *Allocator) caught() Site { return a.capture(make([]uintptr, bookDepth+16)) }

// capture is the one capture of a site outside the hardening layer's
// records (a report's catching call, a sampled or release large block's
// events): the calling goroutine and its stack, read into pcs (the
// Site's Stack is pcs cut to the frames found; the allocator's own frames
// at its top are dropped when it is printed). No sequence number: the
// caller numbers the event.
func (a *Allocator) capture(pcs []uintptr) Site {
	n := callers(1, pcs)
	return Site{Goroutine: goid(), Stack: pcs[:n:n], depth: bookDepth, wrappers: a.opts.Wrappers}
}
