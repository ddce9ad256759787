// Command asangen writes the -asan copy of each Go source file named on
// its command line (package internal/asangen says why), next to it, as
// zasan_<name>. Run by go generate in the packages that use it.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hardalloc/hardalloc/internal/asangen"
)

func main() {
	for _, name := range os.Args[1:] {
		src, err := os.ReadFile(name)
		if err == nil {
			var out []byte
			if out, err = asangen.Transform(src, filepath.Base(name)); err == nil {
				err = os.WriteFile(filepath.Join(filepath.Dir(name), asangen.Prefix+filepath.Base(name)), out, 0o644)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "asangen:", err)
			os.Exit(1)
		}
	}
}
