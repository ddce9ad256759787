package main

import (
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

// A package's own TestMain is kept: renamed, its os.Exit (under any name
// the file imports os as) made hardtest.Exit, and run by a new TestMain
// under hardtest.MainFunc; the result parses.
func TestRewriteTestMain(t *testing.T) {
	src := `package z

import (
	"fmt"
	goos "os"
	"testing"
)

func TestMain(m *testing.M) {
	fmt.Println("setup")
	code := m.Run()
	if code != 0 {
		goos.Exit(code)
	}
	goos.Exit(0)
}

func TestX(t *testing.T) {}
`
	out, ok, err := rewriteTestMain("x_test.go", []byte(src))
	if err != nil || !ok {
		t.Fatalf("rewrite: %v, %v", ok, err)
	}
	s := string(out)
	if _, err := parser.ParseFile(token.NewFileSet(), "x_test.go", out, 0); err != nil {
		t.Fatalf("the rewritten file does not parse: %v\n%s", err, s)
	}
	for _, want := range []string{
		"func hardallocTestMain(m *testing.M) {",
		"hardalloc_hardtest.Exit(code)",
		"hardalloc_hardtest.Exit(0)",
		"hardalloc_os.Exit(hardalloc_hardtest.MainFunc(m, hardallocTestMain))",
		`hardalloc_hardtest "github.com/hardalloc/hardalloc/hardtest"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("rewritten file lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "goos.Exit") {
		t.Errorf("an os.Exit is left:\n%s", s)
	}
	if _, ok, _ := rewriteTestMain("y_test.go", []byte("package z\n\nfunc TestY(t *testing.T) {}\n")); ok {
		t.Error("a file without TestMain was rewritten")
	}
}
