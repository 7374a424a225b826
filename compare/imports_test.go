package compare

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports: compare runs what it is handed; it never reaches NATS, the
// protocol or the cluster layer itself.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/klring/klring/cluster", "github.com/klring/klring/natsnet", "github.com/klring/klring/protocol", "github.com/nats-io/"} {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("compare depends on %s", dep)
			}
		}
	}
}
