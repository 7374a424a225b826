package allreduce_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports checks that allreduce depends on no network client and on no
// other klring package but msgcheck (the msgpack length checker).
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/klring/klring/allreduce").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "nats-io") || (strings.HasPrefix(dep, "github.com/klring/klring/") && dep != "github.com/klring/klring/allreduce" && dep != "github.com/klring/klring/msgcheck") {
			t.Errorf("allreduce depends on %s; want no network client and no other klring package but msgcheck", dep)
		}
	}
}
