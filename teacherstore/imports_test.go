package teacherstore

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports: teacherstore's own files import only lm, loss, kernels,
// shard and the standard library: nothing of engine, networks, clusters,
// configuration or the command line (engine and the cluster layer call it).
func TestImports(t *testing.T) {
	allowed := map[string]bool{"github.com/klring/klring/lm": true, "github.com/klring/klring/loss": true,
		"github.com/klring/klring/kernels": true, "github.com/klring/klring/shard": true,
		"github.com/klring/klring/internal/mmap": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if strings.Contains(first, ".") && !allowed[path] {
				t.Errorf("%s imports %s; want only lm, loss, kernels, shard, internal/mmap and the standard library", name, path)
			}
		}
	}
}
