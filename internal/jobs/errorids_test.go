package jobs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// Job error ids are named constants (ErrID...); a literal number in a
// JobError is a magic id that drifts from composer's table.
func TestNoLiteralJobErrorIDs(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if id, ok := cl.Type.(*ast.Ident); !ok || id.Name != "JobError" {
				return true
			}
			for _, e := range cl.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "ID" {
					if lit, ok := kv.Value.(*ast.BasicLit); ok {
						t.Errorf("%s: JobError with the literal id %s; use an ErrID constant", fset.Position(lit.Pos()), lit.Value)
					}
				}
			}
			return true
		})
	}
}
