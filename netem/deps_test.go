package netem_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports checks that netem depends on no network client and on no
// klring package but allreduce (and msgcheck, which allreduce uses).
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/klring/klring/netem").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "nats-io") || strings.HasPrefix(dep, "github.com/klring/klring/") &&
			dep != "github.com/klring/klring/netem" && dep != "github.com/klring/klring/allreduce" && dep != "github.com/klring/klring/msgcheck" {
			t.Errorf("netem depends on %s; want no network client and no klring package but allreduce", dep)
		}
	}
}
