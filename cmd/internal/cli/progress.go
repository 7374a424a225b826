package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/klring/klring/outputs"
)

// ProgressBar returns a progress function that redraws one line on a
// terminal: a bar, the step, the loss, the KL to the truth and tokens/s.
func ProgressBar(w io.Writer, steps int) func(outputs.StepMetrics) {
	start := time.Now()
	return func(m outputs.StepMetrics) {
		const width = 30
		frac := float64(m.Step) / float64(max(steps, 1))
		fill := int(frac * width)
		bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
		kl := ""
		if m.KLToTruth != nil {
			kl = fmt.Sprintf(" kl %.4f", *m.KLToTruth)
		}
		eta := ""
		if m.Step > 0 && frac > 0 {
			el := time.Since(start)
			eta = fmt.Sprintf(" eta %s", time.Duration(float64(el)/frac-float64(el)).Round(time.Second))
		}
		fmt.Fprintf(w, "\r[%s] step %d/%d loss %.4f%s %6.0f tok/s w=%d%s   ", bar, m.Step, steps, m.Loss, kl, m.TokensPerS, m.Workers, eta)
		if int(m.Step) >= steps {
			fmt.Fprintln(w)
		}
	}
}

// ProgressLog returns a progress function that logs one line per committed
// step (for logs that are not a terminal).
func ProgressLog(log *slog.Logger, steps int) func(outputs.StepMetrics) {
	return func(m outputs.StepMetrics) {
		args := []any{"step", m.Step, "of", steps, "loss", round4(m.Loss), "tokens_per_s", int(m.TokensPerS), "workers", m.Workers}
		if m.KLToTruth != nil {
			args = append(args, "kl_to_truth", round4(*m.KLToTruth))
		}
		if m.ValLoss != nil {
			args = append(args, "val_loss", round4(*m.ValLoss))
		}
		log.Info("progress", args...)
	}
}

func round4(x float64) float64 { return float64(int64(x*1e4+0.5)) / 1e4 }
