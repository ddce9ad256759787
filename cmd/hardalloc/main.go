// Command hardalloc runs other people's test suites on hardalloc.
//
//	hardalloc overlay [-o overlay.json] [-dir .hardalloc] SEAM [PACKAGES]
//
// overlay, run in your own module (which requires hardalloc and the
// dependency), writes a `go test -overlay` file that routes a
// dependency's manual-memory seam through hardalloc's process-wide test
// allocator (hardtest.Default), and gives every test package in PACKAGES
// (default ./...) a TestMain under hardtest.Main, so that when the tests
// end every report and leak fails the binary with its sites:
//
//	go get github.com/hardalloc/hardalloc@latest
//	go run github.com/hardalloc/hardalloc/cmd/hardalloc overlay ristretto ./...
//	go test -overlay hardalloc-overlay.json ./...
//
// A package that has a TestMain of its own keeps it: the overlay renames
// it, replaces its os.Exit calls with hardtest.Exit, and runs it under
// hardtest.MainFunc. The seams (SEAM may be a comma-separated list):
//
//	ristretto  github.com/dgraph-io/ristretto/v2's z.Calloc, z.CallocNoRef, z.Free (and badger's memory)
//	arrow      github.com/apache/arrow-go/v18's Go allocator (memory.DefaultAllocator)
//	pebble     github.com/cockroachdb/pebble/v2's internal/manual (its block cache)
//
// Build tags choose what is checked, as for hardalloc itself: add
// -tags hardened for redzones, poison and every block's sites, or -asan
// to stop bad accesses at the access.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "overlay" {
		fmt.Fprintln(os.Stderr, "usage: hardalloc overlay [-o overlay.json] [-dir .hardalloc] SEAM[,SEAM] [PACKAGES]")
		for _, s := range seams {
			fmt.Fprintf(os.Stderr, "  %-10s %s\n", s.name, s.doc)
		}
		os.Exit(2)
	}
	fs := flag.NewFlagSet("overlay", flag.ExitOnError)
	out := fs.String("o", "hardalloc-overlay.json", "the overlay file to write")
	dir := fs.String("dir", ".hardalloc", "where to write the replacement files")
	fs.Parse(os.Args[2:])
	if fs.NArg() < 1 {
		fs.Usage()
		os.Exit(2)
	}
	pkgs := fs.Args()[1:]
	if len(pkgs) == 0 {
		pkgs = []string{"./..."}
	}
	ov, notes, err := overlay(strings.Split(fs.Arg(0), ","), pkgs, *dir)
	if err == nil {
		err = writeOverlay(*out, ov)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hardalloc overlay: %v\n", err)
		os.Exit(1)
	}
	for _, n := range notes {
		fmt.Fprintln(os.Stderr, "hardalloc overlay:", n)
	}
	fmt.Fprintf(os.Stderr, "hardalloc overlay: wrote %s (%d files); run: go test -overlay %s %s\n", *out, len(ov), *out, strings.Join(pkgs, " "))
}

// overlay builds the overlay's Replace map. Go refuses to overlay files
// in the module cache, so each seam's module is copied under dir/mod and
// the main module's go.mod is overlaid with a replace directive to the
// copy; the seam's files and the TestMains are overlays on the copy (and
// on the user's own packages), so the copy itself stays as published.
func overlay(names, pkgs []string, dir string) (map[string]string, []string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, err
	}
	gomodPath, err := goCmd("env", "GOMOD")
	if err != nil {
		return nil, nil, err
	}
	gomod := strings.TrimSpace(string(gomodPath))
	if gomod == "" || gomod == os.DevNull {
		return nil, nil, errors.New("run it in your module (no go.mod here)")
	}
	modText, err := os.ReadFile(gomod)
	if err != nil {
		return nil, nil, err
	}
	ov := map[string]string{}
	var notes []string
	for _, name := range names {
		s, ok := findSeam(name)
		if !ok {
			return nil, nil, fmt.Errorf("no seam %q (ristretto, arrow, pebble)", name)
		}
		if bytes.Contains(modText, []byte("replace "+s.module)) || bytes.Contains(modText, []byte("\t"+s.module+" =>")) {
			return nil, nil, fmt.Errorf("%s: go.mod already replaces %s", s.name, s.module)
		}
		mdir, err := moduleDir(s.module)
		if err != nil {
			return nil, nil, err
		}
		cp := filepath.Join(dir, "mod", s.name)
		if err := copyModule(mdir, cp); err != nil {
			return nil, nil, err
		}
		modText = append(modText, fmt.Sprintf("\nreplace %s => %s\n", s.module, cp)...)
		for _, f := range s.files {
			if _, err := os.Stat(filepath.Join(mdir, filepath.FromSlash(f.path))); err != nil {
				return nil, nil, fmt.Errorf("%s: the seam's file is not in this version of %s: %v", s.name, s.module, err)
			}
			repl := filepath.Join(dir, "seam", s.name, filepath.FromSlash(f.path))
			if err := writeFile(repl, []byte(f.body)); err != nil {
				return nil, nil, err
			}
			ov[filepath.Join(cp, filepath.FromSlash(f.path))] = repl
		}
		notes = append(notes, fmt.Sprintf("%s: %s (%s, from %s)", s.name, s.doc, s.module, mdir))
	}
	// The test packages, listed through the overlay so far: a seam's
	// packages resolve to its copy. Test packages of other modules in the
	// module cache get a TestMain too, so their modules are copied and
	// replaced as well, and the list made again.
	modOut := filepath.Join(dir, "go.mod")
	tmp := filepath.Join(dir, "list-overlay.json")
	cache, err := goCmd("env", "GOMODCACHE")
	if err != nil {
		return nil, nil, err
	}
	modcache := strings.TrimSpace(string(cache)) + string(filepath.Separator)
	var list []pkgInfo
	for {
		if err := writeFile(modOut, modText); err != nil {
			return nil, nil, err
		}
		ov[gomod] = modOut
		if err := writeOverlay(tmp, ov); err != nil {
			return nil, nil, err
		}
		if list, err = testPackages(tmp, pkgs); err != nil {
			return nil, nil, err
		}
		copied := map[string]bool{}
		for _, p := range list {
			if !strings.HasPrefix(p.Dir, modcache) || p.Module == nil || copied[p.Module.Path] {
				continue
			}
			copied[p.Module.Path] = true
			cp := filepath.Join(dir, "mod", strings.ReplaceAll(p.Module.Path, "/", "_"))
			if err := copyModule(p.Module.Dir, cp); err != nil {
				return nil, nil, err
			}
			modText = append(modText, fmt.Sprintf("\nreplace %s => %s\n", p.Module.Path, cp)...)
		}
		if len(copied) == 0 {
			break
		}
	}
	for _, p := range list {
		from, to, body, err := testMain(p, dir)
		if err != nil {
			return nil, nil, err
		}
		if err := writeFile(to, body); err != nil {
			return nil, nil, err
		}
		ov[from] = to
	}
	return ov, notes, nil
}

// copyModule copies the module tree at src to dst (writable), unless dst
// already holds that copy.
func copyModule(src, dst string) error {
	stamp := filepath.Join(dst, ".hardalloc-source")
	if b, err := os.ReadFile(stamp); err == nil && string(b) == src {
		return nil
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		return err
	}
	return os.WriteFile(stamp, []byte(src), 0o644)
}

func findSeam(name string) (seam, bool) {
	for _, s := range seams {
		if s.name == name {
			return s, true
		}
	}
	return seam{}, false
}

// moduleDir is where the build list's version of module lies.
func moduleDir(module string) (string, error) {
	out, err := goCmd("list", "-m", "-json", module)
	if err != nil {
		return "", fmt.Errorf("%s is not in this module's build list (go get %s first): %v", module, module, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		// Not downloaded yet: go mod download fills the module cache.
		if _, derr := goCmd("mod", "download", module); derr != nil {
			return "", fmt.Errorf("go mod download %s: %v", module, derr)
		}
		if out, err = goCmd("list", "-m", "-json", module); err != nil {
			return "", err
		}
		json.Unmarshal(out, &m)
	}
	if m.Dir == "" {
		return "", fmt.Errorf("no source for %s", module)
	}
	return m.Dir, nil
}

type pkgInfo struct {
	ImportPath   string
	Dir          string
	Name         string
	TestGoFiles  []string
	XTestGoFiles []string
	Module       *struct{ Path, Dir string }
}

// testPackages lists the packages of pkgs that have tests, through the
// overlay file ov.
func testPackages(ov string, pkgs []string) ([]pkgInfo, error) {
	out, err := goCmd(append([]string{"list", "-overlay", ov, "-json=ImportPath,Dir,Name,TestGoFiles,XTestGoFiles,Module"}, pkgs...)...)
	if err != nil {
		return nil, err
	}
	var list []pkgInfo
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			return nil, err
		}
		if len(p.TestGoFiles)+len(p.XTestGoFiles) > 0 {
			list = append(list, p)
		}
	}
	return list, nil
}

// testMain returns the overlay entry that puts p's tests under
// hardtest: a new file with a TestMain calling hardtest.Main, or the file
// holding p's own TestMain rewritten to run under hardtest.MainFunc.
func testMain(p pkgInfo, dir string) (from, to string, body []byte, err error) {
	to = filepath.Join(dir, "testmain", filepath.FromSlash(p.ImportPath))
	for _, set := range [][]string{p.TestGoFiles, p.XTestGoFiles} {
		for _, name := range set {
			path := filepath.Join(p.Dir, name)
			b, rerr := os.ReadFile(path)
			if rerr != nil {
				return "", "", nil, rerr
			}
			if !bytes.Contains(b, []byte("func TestMain(")) {
				continue
			}
			nb, ok, rerr := rewriteTestMain(path, b)
			if rerr != nil {
				return "", "", nil, fmt.Errorf("%s: %v", path, rerr)
			}
			if ok {
				return path, filepath.Join(to, name), nb, nil
			}
		}
	}
	pkg := p.Name
	if len(p.TestGoFiles) == 0 {
		pkg += "_test" // only external tests: join their package
	}
	from = filepath.Join(p.Dir, "zz_hardalloc_main_test.go")
	body = []byte(fmt.Sprintf(`package %s

// Added by cmd/hardalloc's overlay: the tests run under hardtest.Main,
// which checks and closes hardtest.Default when they end.

import (
	"os"
	"testing"

	"github.com/hardalloc/hardalloc/hardtest"
)

func TestMain(m *testing.M) { os.Exit(hardtest.Main(m)) }
`, pkg))
	return from, filepath.Join(to, "zz_hardalloc_main_test.go"), body, nil
}

// rewriteTestMain renames a file's TestMain to hardallocTestMain, makes
// its os.Exit calls hardtest.Exit, and adds a TestMain that runs it under
// hardtest.MainFunc. ok is false if the file declares no TestMain.
func rewriteTestMain(path string, src []byte) ([]byte, bool, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
	if err != nil {
		return nil, false, err
	}
	var tm *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == "TestMain" {
			tm = fd
		}
	}
	if tm == nil {
		return nil, false, nil
	}
	osName := ""
	for _, im := range f.Imports {
		if p, _ := strconv.Unquote(im.Path.Value); p == "os" {
			osName = "os"
			if im.Name != nil {
				osName = im.Name.Name
			}
		}
	}
	tm.Name.Name = "hardallocTestMain"
	ast.Inspect(tm.Body, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok && osName != "" {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == osName && sel.Sel.Name == "Exit" {
				id.Name, sel.Sel.Name = "hardalloc_hardtest", "Exit"
			}
		}
		return true
	})
	var buf bytes.Buffer
	if err := format.Node(&buf, fset, f); err != nil {
		return nil, false, err
	}
	// The import and the new TestMain go at the end: Go allows an import
	// declaration only before other declarations, so it is spliced in
	// after the package clause instead.
	out := buf.String()
	i := strings.Index(out, "\npackage ")
	if !strings.HasPrefix(out, "package ") && i < 0 {
		return nil, false, errors.New("no package clause")
	}
	eol := strings.Index(out[max(i, 0)+1:], "\n") + max(i, 0) + 1
	out = out[:eol+1] + "\nimport hardalloc_hardtest \"github.com/hardalloc/hardalloc/hardtest\"\n" + out[eol+1:]
	out += "\n// TestMain runs the package's own TestMain (hardallocTestMain) under\n// hardtest.MainFunc: added by cmd/hardalloc's overlay.\n" +
		"func TestMain(m *testing.M) {\n\thardalloc_os.Exit(hardalloc_hardtest.MainFunc(m, hardallocTestMain))\n}\n"
	out = strings.Replace(out, "import hardalloc_hardtest \"github.com/hardalloc/hardalloc/hardtest\"\n",
		"import hardalloc_hardtest \"github.com/hardalloc/hardalloc/hardtest\"\nimport hardalloc_os \"os\"\n", 1)
	res, err := format.Source([]byte(out))
	if err != nil {
		return nil, false, fmt.Errorf("rewritten TestMain does not parse: %v", err)
	}
	return res, true, nil
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func writeOverlay(path string, ov map[string]string) error {
	b, err := json.MarshalIndent(struct{ Replace map[string]string }{ov}, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func goCmd(args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
