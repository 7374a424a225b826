// Command coordinator serves a klring training job: it owns the authoritative
// model and optimizer, plans every step, checkpoints and evaluates. Its
// subcommands also run a whole job in one process (sim), evaluate and sample
// from checkpoints, and run scaling experiments.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/klring/klring/cmd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.Coordinator().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "coordinator:", err)
		os.Exit(1)
	}
}
