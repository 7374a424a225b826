package engine

import (
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
)

// useBlockCE reports whether training with o over a vocabulary of V tokens
// computes its loss with lm.BlockCE: the plain cross-entropy of the next
// tokens (a hard target at temperature 1, no label smoothing), which is what
// the loss package computes for such a target (Loss, CE and Div all the
// cross-entropy, Kept 1 per row), over a vocabulary large enough that the
// model hands the blocks over without writing whole rows of logits
// (lm.HeadBlocked: GPT-2's 50257 tokens are 99 blocks).
func useBlockCE(o Options, V int) bool {
	l := o.Loss
	return o.Target == TargetHard && o.OnPolicy.Fraction == 0 && lm.HeadBlocked(V) &&
		l.Direction == loss.Forward && l.Temperature == 1 && l.LabelSmoothing == 0 &&
		l.HardWeight == 0 && l.TeacherTopK == 0
}
