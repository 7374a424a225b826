package shard

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStdlibOnly: shard imports nothing but the standard library and
// internal/mmap (itself standard library only): no models, no networks;
// test files may import the package itself.
func TestStdlibOnly(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if strings.Contains(first, ".") && path != "github.com/klring/klring/internal/mmap" &&
				!(strings.HasSuffix(name, "_test.go") && path == "github.com/klring/klring/shard") {
				t.Errorf("%s imports %s; want the standard library only", name, path)
			}
		}
	}
}
