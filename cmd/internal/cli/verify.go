package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/klring/klring/cluster"
)

func verifyCmd() *cobra.Command {
	var data string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify RUN_DIR",
		Short: "Audit a run directory: every step committed once, every window exactly once per data epoch, checkpoints and metrics",
		Long: "Audit a run directory: ledger.jsonl commits steps 1..N once each; every step's windows are its global batch, " +
			"split among ranks with no window twice; the batches are the data's stream, so every data epoch visits each " +
			"training window exactly once and no held-out window is trained on; every checkpoint verifies its digests; " +
			"metrics.jsonl agrees with the ledger. Exits 1 with the first problem.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := cluster.Verify(args[0], data)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(rep)
			}
			fmt.Printf("%s: ok\n", rep.RunDir)
			fmt.Printf("  %d steps committed once each, %d window contributions, %d complete data epochs each visiting every training window once\n", rep.Steps, rep.Windows, rep.DataEpochs)
			fmt.Printf("  %d metrics lines agree with the ledger\n", rep.Metrics)
			fmt.Printf("  %d checkpoints verify: %s\n", len(rep.Checkpoints), strings.Join(rep.Checkpoints, " "))
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "the run's data source, if it moved (default: the one in run.json)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}
