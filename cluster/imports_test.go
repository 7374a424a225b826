package cluster

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection enforces the package graph of docs/design.md: arrows
// point down only.
func TestImportDirection(t *testing.T) {
	forbidden := map[string][]string{
		"loss":      {"lm", "shard", "allreduce", "natsnet", "cluster", "config", "nats.go", "nats-server"},
		"lm":        {"loss", "shard", "allreduce", "natsnet", "cluster", "config", "nats.go", "nats-server"},
		"shard":     {"lm", "loss", "kernels", "allreduce", "natsnet", "cluster", "config", "gonum", "nats.go"},
		"allreduce": {"lm", "loss", "shard", "natsnet", "cluster", "config", "nats.go", "nats-server"},
		"kernels":   {"lm", "loss", "shard", "allreduce", "cluster", "config", "nats.go"},
		"config":    {"cluster", "natsnet", "nats.go"},
		// The protocol decides; it does no I/O: no NATS, models, losses,
		// files of the run, and nothing above it.
		"protocol":  {"lm", "loss", "kernels", "natsnet", "cluster", "config", "engine", "outputs", "nats.go", "nats-server", "gonum.org/v1/gonum"},
		"engine":    {"allreduce", "natsnet", "cluster", "config", "protocol", "outputs", "nats.go"},
		"outputs":   {"lm", "loss", "shard", "allreduce", "natsnet", "cluster", "config", "protocol", "engine", "nats.go"},
		"charts":    {"lm", "loss", "shard", "allreduce", "natsnet", "cluster", "config", "protocol", "engine", "outputs", "nats.go"},
		"tokenizer": {"lm", "loss", "allreduce", "natsnet", "cluster", "config", "nats.go"},
		"certs":     {"lm", "loss", "shard", "allreduce", "natsnet", "cluster", "config", "nats.go"},
		"natsnet":   {"lm", "loss", "shard", "cluster", "config", "protocol", "engine"},
		// msgcheck knows the msgpack format and nothing else.
		"msgcheck": {"lm", "loss", "shard", "kernels", "allreduce", "natsnet", "cluster", "config", "protocol", "engine", "outputs", "nats.go", "msgpack"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "github.com/klring/klring/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				if dep == "github.com/klring/klring/"+b || strings.Contains(dep, "/"+b+"/") || strings.HasSuffix(dep, "/"+b) && strings.Contains(b, ".") {
					t.Errorf("%s imports %s (forbidden: %s)", pkg, dep, b)
				}
			}
		}
	}
}
