package hardened

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
)

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
