package trustloop_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// hintExempt are the directories whose errors this check leaves out: the
// conformance suite's (test helpers) and the demo loader's, which are its own
// progress reports.
var hintExempt = map[string]bool{"storetest": true, "demo": true}

// TestErrorsSayWhatToDo: every error made with trustloop.Errorf and a literal
// message, outside the exempt directories, carries a hint (what to do now),
// unless it is EINTERNAL (nothing the caller can do). An error made with a
// message that is not a literal is a helper's, whose callers add the hint.
func TestErrorsSayWhatToDo(t *testing.T) {
	fset := token.NewFileSet()
	var missing []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (hintExempt[path] || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		missing = append(missing, unhinted(fset, f)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range missing {
		t.Errorf("%s: an error without a hint; add .WithHint(what to do now)", m)
	}
}

// unhinted lists the positions of f's Errorf calls that need a hint and are
// not the receiver of a WithHint call.
func unhinted(fset *token.FileSet, f *ast.File) []string {
	hinted := map[*ast.CallExpr]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "WithHint" {
				if inner, ok := s.X.(*ast.CallExpr); ok {
					hinted[inner] = true
				}
			}
		}
		return true
	})
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		c, ok := n.(*ast.CallExpr)
		if !ok || hinted[c] || len(c.Args) < 2 || !isErrorf(f, c) {
			return true
		}
		if code, ok := c.Args[0].(*ast.SelectorExpr); ok && code.Sel.Name == "EINTERNAL" {
			return true
		}
		if code, ok := c.Args[0].(*ast.Ident); ok && code.Name == "EINTERNAL" {
			return true
		}
		if _, literal := c.Args[1].(*ast.BasicLit); !literal {
			return true
		}
		out = append(out, fset.Position(c.Pos()).String())
		return true
	})
	return out
}

// isErrorf reports whether c calls trustloop.Errorf (or Errorf inside the
// package itself).
func isErrorf(f *ast.File, c *ast.CallExpr) bool {
	switch fn := c.Fun.(type) {
	case *ast.SelectorExpr:
		pkg, ok := fn.X.(*ast.Ident)
		return ok && pkg.Name == "trustloop" && fn.Sel.Name == "Errorf"
	case *ast.Ident:
		return f.Name.Name == "trustloop" && fn.Name == "Errorf"
	}
	return false
}
