package hardened

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// This file is the report: its kinds, fields and text (Report.String),
// what the allocator prints by itself, and the JSON form. Explain and
// CatchFault, which build reports from an address, are in explain.go;
// the errors that carry reports in errors.go.

// Kind classifies a report.
type Kind int

// The kinds of bug the allocator reports. Release builds detect
// DoubleFree, InvalidFree, HeaderCorruption and Leak; the others need the
// hardening layer (-tags hardened).
const (
	DoubleFree       Kind = iota + 1 // Free or Realloc of a block already freed
	InvalidFree                      // Free of a pointer the allocator did not return (foreign, interior, never allocated)
	Overflow                         // a write past the end of a block (rear redzone or guard page)
	Underflow                        // a write before the start of a block (front redzone or guard page)
	WriteAfterFree                   // a freed block's poison was changed after its Free (in the quarantine or on a free list)
	UseAfterFree                     // an access to, or Realloc of, a freed block
	HeaderCorruption                 // a block header failed its keyed checksum
	Leak                             // a block still live at Close
	MetadataWrite                    // a write to protected allocator metadata
	UseAfterClose                    // an operation on a closed allocator
	InvalidAccess                    // an access to allocator memory that holds no block (-asan)
)

var kindNames = [...]string{
	DoubleFree:       "double-free",
	InvalidFree:      "invalid-free",
	Overflow:         "heap-buffer-overflow",
	Underflow:        "heap-buffer-underflow",
	WriteAfterFree:   "write-after-free",
	UseAfterFree:     "heap-use-after-free",
	HeaderCorruption: "header-corruption",
	Leak:             "memory-leak",
	MetadataWrite:    "metadata-write",
	UseAfterClose:    "use-after-close",
	InvalidAccess:    "invalid-access",
}

func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error makes a Kind usable as an errors.Is target.
func (k Kind) Error() string { return k.String() }

// Site says where a block was allocated or freed. Goroutine, Seq and Stack
// are recorded only by hardened builds; a release build leaves Site zero.
type Site struct {
	Goroutine uint64    // goroutine id, 0 if unknown
	Seq       uint64    // allocator-wide sequence number of the operation
	Stack     []uintptr // return addresses, innermost first (may include the allocator's own frames)
	depth     int       // frames to show
	wrappers  []string  // Options.Wrappers: dropped from the top like the allocator's own frames
}

// Known reports whether anything was recorded.
func (s Site) Known() bool { return s.Seq != 0 }

// Frames symbolizes the stack (done only when a report is printed),
// without the allocator's own frames and those of the wrappers
// Options.Wrappers names above them.
func (s Site) Frames() []runtime.Frame {
	if len(s.Stack) == 0 {
		return nil
	}
	var out []runtime.Frame
	fr := runtime.CallersFrames(s.Stack)
	for {
		f, more := fr.Next()
		own := len(out) == 0 && (strings.HasPrefix(f.Function, pkgPath+".") || s.wraps(f.Function))
		if !own && !isWrapper(f.Function) {
			out = append(out, f)
		}
		if !more || (s.depth > 0 && len(out) == s.depth) {
			break
		}
	}
	return out
}

// wraps reports whether fn is one of the wrappers Options.Wrappers names.
func (s Site) wraps(fn string) bool {
	for _, w := range s.wrappers {
		if strings.HasPrefix(fn, w) {
			return true
		}
	}
	return false
}

// isWrapper reports compiler-generated go-statement wrappers, which
// runtime.Callers elides and frame-pointer unwinding does not.
func isWrapper(fn string) bool { return strings.Contains(fn, ".gowrap") }

// TopFunction is the innermost function outside this package, or "".
func (s Site) TopFunction() string {
	for _, f := range s.Frames() {
		if !strings.HasPrefix(f.Function, pkgPath+".") {
			return f.Function
		}
	}
	return ""
}

const pkgPath = "github.com/hardalloc/hardalloc/hardened"

// Report is everything known about one detected bug.
type Report struct {
	Kind   Kind
	Op     string  // the operation that found it: Free, Realloc, Alloc, Check, Close, fault
	Addr   uintptr // the address involved: the pointer passed, the first bad byte, or the faulting address
	Block  uintptr // start of the block's payload, 0 if no block is known
	Size   int     // the block's size in bytes, -1 if unknown
	Class  int     // size class, -1 for a large block or none
	Offset int     // Addr - Block
	Header uint64  // the raw header word, for HeaderCorruption
	Want   []byte  // for redzone and poison damage: the expected bytes from Addr on
	Got    []byte  // and the bytes found there
	Alloc  Site    // where the block was last allocated
	Free   Site    // where it was first freed (if it was)
	Detail string  // anything else worth saying
	// Access is the bad access itself, when AddressSanitizer caught it
	// (-asan builds): the accessing stack, innermost first (no goroutine
	// or sequence number); AccessSize is its width in bytes. Op is then
	// "read" or "write".
	Access     Site
	AccessSize int
	// Caught is the goroutine and stack of the call that caught the bug:
	// the Free of a double free, the Realloc, Check or Alloc that found
	// damage (no sequence number). Empty for leaks and faults.
	Caught Site
	// Sampled says the block was one of Options.SampleRate's guarded
	// samples.
	Sampled bool
	// accessText is the accessing goroutine's stack as the crash monitor
	// read it from the dying process's crash output (Monitor).
	accessText []runtime.Frame
}

// Summary is a one-line description suitable for deduplicating crashes:
// the kind and the top frame of the allocation site. It leaves out where
// the bug was caught (Free, Check, the quarantine, Close, an access), so
// that one bug is one crash id however a run found it.
func (r *Report) Summary() string {
	s := r.Kind.String()
	if f := r.Alloc.TopFunction(); f != "" {
		s += " of block allocated in " + f
	} else if r.Block != 0 && r.Size >= 0 {
		s += " of " + strconv.Itoa(r.Size) + "-byte block"
	} else if r.Block != 0 {
		s += " of a block of unknown size"
	}
	return s
}

// String formats the report like an AddressSanitizer report.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "==hardalloc== ERROR: %s on address %#x (%s)\n", r.Kind, r.Addr, r.Op)
	if r.Detail != "" {
		fmt.Fprintf(&b, "  %s\n", r.Detail)
	}
	if r.Block != 0 {
		where := ""
		switch {
		case r.Size < 0:
			where = fmt.Sprintf("located in a block at %#x of unknown size", r.Block)
		case r.Offset < 0:
			where = fmt.Sprintf("%s before the start of a %d-byte block at %#x", plural(-r.Offset, "byte"), r.Size, r.Block)
		case r.Offset >= r.Size && r.Offset > 0:
			where = fmt.Sprintf("%s after the end of a %d-byte block at %#x", plural(r.Offset-r.Size, "byte"), r.Size, r.Block)
		default:
			where = fmt.Sprintf("%s inside a %d-byte block at %#x", plural(r.Offset, "byte"), r.Size, r.Block)
		}
		fmt.Fprintf(&b, "  %s", where)
		switch {
		case r.Sampled:
			b.WriteString(" (sampled block)")
		case r.Class >= 0:
			fmt.Fprintf(&b, " (size class %d)", r.Class)
		default:
			b.WriteString(" (large block)")
		}
		b.WriteString("\n")
	}
	if r.Kind == HeaderCorruption {
		fmt.Fprintf(&b, "  header word %#016x\n", r.Header)
	}
	if len(r.Got) > 0 {
		fmt.Fprintf(&b, "  bytes at %#x: found % x\n", r.Addr, r.Got)
		fmt.Fprintf(&b, "  %*s expected % x\n", len(fmt.Sprintf("bytes at %#x:", r.Addr)), "", r.Want)
	}
	writeAccess(&b, r)
	writeCaught(&b, r)
	writeSite(&b, "freed", r.Free)
	writeSite(&b, "allocated", r.Alloc)
	fmt.Fprintf(&b, "SUMMARY: hardalloc: %s\n", r.Summary())
	return b.String()
}

func writeAccess(b *strings.Builder, r *Report) {
	if len(r.accessText) > 0 {
		fmt.Fprintf(b, "ACCESS at %#x by:\n", r.Addr)
		writeFrames(b, r.accessText)
		return
	}
	if len(r.Access.Stack) == 0 {
		return
	}
	fmt.Fprintf(b, "%s of size %d at %#x by:\n", strings.ToUpper(r.Op), r.AccessSize, r.Addr)
	fr := r.Access.Frames()
	if len(fr) == 0 || fr[0].Function == "" {
		fmt.Fprintf(b, "    #0 %#x (C code: see AddressSanitizer's stack above)\n", r.Access.Stack[0])
		return
	}
	writeFrames(b, fr)
}

// writeCaught writes the call that caught the bug: for a double free,
// the second Free, before the first (ASan's "freed by thread T0 here",
// then "previously freed by").
func writeCaught(b *strings.Builder, r *Report) {
	if len(r.Caught.Stack) == 0 {
		return
	}
	what := "caught by " + r.Op
	if r.Kind == DoubleFree {
		what = "freed again (" + r.Op + ")"
	}
	fmt.Fprintf(b, "%s by goroutine %d at:\n", what, r.Caught.Goroutine)
	writeFrames(b, r.Caught.Frames())
}

func writeFrames(b *strings.Builder, frames []runtime.Frame) {
	for i, f := range frames {
		fmt.Fprintf(b, "    #%d %s\n        %s:%d\n", i, f.Function, f.File, f.Line)
	}
}

func writeSite(b *strings.Builder, verb string, s Site) {
	if !s.Known() {
		return
	}
	fmt.Fprintf(b, "%s by goroutine %d (seq %d) at:\n", verb, s.Goroutine, s.Seq)
	writeFrames(b, s.Frames())
}

// plural spells a count with its noun: "1 byte", "3 bytes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// What the allocator prints by itself: the default OnReport's report and
// the leak list of Close. Everything else is returned or handed to
// OnReport.

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

// The JSON form of a report, for CI systems and code-scanning tools. The
// schema is stable (fields are only ever added) and documented in the
// README; addresses are hexadecimal strings, byte dumps hex.
type jsonReport struct {
	Kind       string    `json:"kind"`
	Op         string    `json:"op"`
	Addr       string    `json:"addr"`
	Block      string    `json:"block,omitempty"`
	Size       *int      `json:"size,omitempty"` // absent when unknown
	Class      *int      `json:"class,omitempty"`
	Large      bool      `json:"large,omitempty"`
	Sampled    bool      `json:"sampled,omitempty"`
	Offset     *int      `json:"offset,omitempty"`
	Header     string    `json:"header,omitempty"`
	Found      string    `json:"found,omitempty"`
	Expected   string    `json:"expected,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	Access     *jsonSite `json:"access,omitempty"`
	AccessSize int       `json:"access_size,omitempty"`
	Caught     *jsonSite `json:"caught,omitempty"`
	Alloc      *jsonSite `json:"alloc,omitempty"`
	Free       *jsonSite `json:"free,omitempty"`
	Summary    string    `json:"summary"`
}

type jsonSite struct {
	Goroutine uint64      `json:"goroutine,omitempty"`
	Seq       uint64      `json:"seq,omitempty"`
	Frames    []jsonFrame `json:"frames"`
}

type jsonFrame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

func hexAddr(p uintptr) string { return "0x" + strconv.FormatUint(uint64(p), 16) }

func siteJSON(s Site) *jsonSite {
	if !s.Known() && len(s.Stack) == 0 {
		return nil
	}
	js := &jsonSite{Goroutine: s.Goroutine, Seq: s.Seq, Frames: []jsonFrame{}}
	for _, f := range s.Frames() {
		js.Frames = append(js.Frames, jsonFrame{Function: f.Function, File: f.File, Line: f.Line})
	}
	return js
}

// MarshalJSON encodes the report in the README's stable schema, with its
// stacks symbolized.
func (r *Report) MarshalJSON() ([]byte, error) {
	j := jsonReport{
		Kind: r.Kind.String(), Op: r.Op, Addr: hexAddr(r.Addr), Detail: r.Detail,
		Access: siteJSON(r.Access), AccessSize: r.AccessSize, Caught: siteJSON(r.Caught),
		Alloc: siteJSON(r.Alloc), Free: siteJSON(r.Free), Summary: r.Summary(),
	}
	if r.Block != 0 {
		j.Block = hexAddr(r.Block)
		off := r.Offset
		j.Offset = &off
		switch {
		case r.Sampled:
			j.Sampled = true
		case r.Class >= 0:
			c := r.Class
			j.Class = &c
		default:
			j.Large = true
		}
	}
	if r.Size >= 0 {
		n := r.Size
		j.Size = &n
	}
	if r.Kind == HeaderCorruption {
		j.Header = "0x" + strconv.FormatUint(r.Header, 16)
	}
	if len(r.Got) > 0 {
		j.Found, j.Expected = hex.EncodeToString(r.Got), hex.EncodeToString(r.Want)
	}
	return json.Marshal(j)
}
