// Package loss computes KL-divergence losses of a language model's logits and
// their exact gradients, fused with the softmax: the training loss of klring,
// including knowledge distillation against a teacher model's logits.
//
// # What it computes
//
// The logits z are row-major float32 [rows x vocab] (dimension letters as in
// lm: rows = B*T positions, vocab = V). For every row, Q = softmax(z/T) is
// the model's (the student's) distribution and P the target's:
//
//	Forward  D_KL(P||Q) = sum_i p_i (log p_i - log q_i)       (PyTorch's F.kl_div(log_softmax(z/T), P))
//	Reverse  D_KL(Q||P) = sum_i q_i (log q_i - log p_i)
//	JSD      beta*D_KL(P||M) + (1-beta)*D_KL(Q||M),  M = beta*P + (1-beta)*Q
//
// with 0 log 0 = 0. JSD at beta = 0 is forward KL and at beta = 1 reverse KL
// (TRL's GKD convention, not the vanishing limits of the mixture). With s =
// z/T, the gradients are
//
//	Forward  dL/ds_j = q_j*S - p_j                  (S = sum_i p_i; q - p for a distribution)
//	Reverse  dL/ds_j = q_j (log q_j - log p_j - D_KL(Q||P))
//	JSD      dL/ds_j = (1-beta) q_j (log q_j - log m_j - D_KL(Q||M))
//
// and dL/dz = dL/ds / T. With Options.ScaleT2 the divergence and its
// gradient are multiplied by T^2. Options.HardWeight w mixes in the
// cross-entropy of the hard next tokens at temperature 1:
//
//	loss = (1-w)*D + w*CE(hard, softmax(z)),   dCE/dz = softmax(z) - onehot
//
// Every row's gradient sums to 0.
//
// # Targets
//
// Target holds one soft kind, or hard token ids alone; hard ids may also come
// beside a soft kind, as the tokens of the cross-entropy.
//
//   - Hard: P is one-hot, smoothed by Options.LabelSmoothing to
//     (1-eps)*onehot + eps/V; forward KL is then the cross-entropy minus the
//     entropy of P. Rows whose id is Options.IgnoreIndex count nothing, also
//     beside a soft kind.
//   - Probs, LogProbs: dense probabilities or log-probabilities.
//   - TeacherLogits: a teacher model's logits for the same rows; P =
//     softmax(t/T_t) with Options.TeacherTemperature, and log P = t/T_t -
//     logsumexp(t/T_t) straight from the logits, so a probability that
//     underflows never becomes log 0 (reverse KL against a confident
//     teacher stays finite). Options.TeacherTopK k keeps the teacher's k
//     largest probabilities, selected inside the pass.
//   - Sparse: K (id, probability) pairs per row, such as a teacher's
//     precomputed top k. A row summing to S within 1e-6 of 1 (or above)
//     lists everything; otherwise the ids not listed hold 1 - S.
//
// A top-k target (TeacherLogits with 0 < k < V, or Sparse with K < V) keeps
// mass S on its k ids; Options.TeacherTail says what happens to the rest:
// TailUniform spreads 1 - S evenly over the other V - k ids, TailRenormalize
// divides the k probabilities by S (the others get 0), TailRest takes the
// divergence over the k ids plus one bucket P_rest = 1 - S against Q_rest =
// 1 - sum of the k ids' q (forward KL only). The tail is ignored when k is
// 0 or V. Label smoothing (hard, teacher and sparse targets) mixes P' =
// (1-eps)*P + eps/V after the tail (the rest bucket gets eps*(V-k)/V), which
// is what makes reverse KL finite against a renormalized top k; options that
// cannot give a finite loss whatever the data (reverse KL with a
// renormalized top k and no smoothing, the rest tail with reverse KL or
// JSD) are refused before any row is computed.
//
// Results are per-row sums (Result, rowLoss): the loss, and its parts summed
// over the rows not ignored: the divergence (times T^2), the cross-entropy of
// the hard tokens (whenever Target.Hard is set, also when w = 0, so a trainer
// gets its metric from the same pass), and the target mass kept by top-k (S;
// 1 per row for every other target). Reduce applies PyTorch's reductions
// sum, batchmean and mean (element mean), and GradScale gives the matching
// gradient scale.
//
// # How
//
// Each row is done by one goroutine, with the gradient written over the
// logits (no second rows x vocab buffer) scaled by an explicit gradScale, so
// a data-parallel caller passes 1/(global token count) and gets its share of
// the global mean directly. Rows are split over a kernels.Pool; per-row
// losses and parts are summed in row order afterwards, so results do not
// depend on the split, and the first bad row is the one reported. A
// Computer owns its scratch and allocates nothing per call in the steady
// state.
//
// Two paths compute a row (fast.go, distill.go, loss.go):
//
//   - Fast paths, for every direction against dense, teacher-logit and
//     top-k targets (teacher or sparse, every tail), for forward KL against
//     hard targets, on rows of finite logits. The row is read from memory
//     once, by a pass that finds max, min and sum (the shift, and proof the
//     row is finite); the other passes run on the row while it sits in
//     L1/L2: exp(z/T - max/T) with its float64 sum (in place when the
//     gradient goes there), then the gradient as one scale-and-add (q - p)
//     or one multiply (q times a shifted log-ratio). The loss comes from
//     float64 sums taken relative to the shift. The row kernels live in
//     kernels (MaxMinSum, ExpSum, ExpDiffDot, LogMixDot, MulDiff, Axpby,
//     ...: AVX-512 or AVX2 assembly chosen at run time, portable Go
//     elsewhere) and prefetch the next row while they compute. Two passes
//     over a cached row cost less than an online (rescaling) softmax,
//     which needs a second exp per element in vector form.
//
//     Teacher logits add one pass for the teacher's exps, with the sum of
//     exp times the difference of the two models' arguments (ExpDiffDot):
//     forward and reverse KL take two exps per element, JSD two exps and a
//     log (LogMixDot computes log m, its sums and the gradient's main term
//     in one pass). The teacher's top k are selected by a threshold from
//     the maxima of 2k strided groups, found in the pass that checks the
//     row's range (GroupMaxMin: at least k entries reach the k-th largest
//     maximum), a branch-free scan for the entries above it (IndicesAbove)
//     and an exact bit search among those candidates (TopBound); the k
//     listed entries are then done in float64 and the vector passes treat
//     every id as unlisted.
//
//   - The reference path, float64 throughout, with an online maximum and
//     log-sum-exp in one pass over the row: masked (-Inf) logits, |z/T| >
//     1e6, reverse KL and JSD against hard targets, and every row a fast
//     path declines (one whose rest of a top k underflows a float32 exp,
//     for instance). It validates the row and names the exact error. Tests
//     hold the fast paths to it (and it to PyTorch).
//
// Accuracy: the fast paths use a float32 exp and log (within 2 ulp), so a
// row's loss is within about 1e-6 absolute of the float64 value, and
// gradients within 1e-6 absolute plus 1e-4 relative (reverse KL and JSD:
// their gradients, q*(log q - log p - D) and the like, cancel in float32;
// where log p is far below log q the difference is taken in float64, so a
// reverse KL of 5e4 nats still has gradients to 1e-4). Sums of a top k's
// rest are taken directly when small, so a teacher whose top k holds all
// but 1e-15 of its mass keeps the digits of its tail. The tests hold both
// paths to PyTorch's float64 values (testdata/kl_torch.json,
// testdata/distill_torch.json), to finite differences of an independent
// float64 reference, and to each other (fuzzed).
//
// # Errors
//
// Shape mismatches (slice lengths, two soft target kinds) are programmer
// errors and panic with the prefix "loss:". Bad data returns a *RowError
// naming the first bad row and wrapping a sentinel: ErrNonFiniteLogit (NaN
// or +Inf in the student's or the teacher's logits; -Inf masks a token),
// ErrAllMasked, ErrNegativeProb, ErrProbSum (not 1 within 1e-3), ErrTokenRange,
// ErrDuplicateID, ErrInfiniteKL (reverse KL with target mass 0 where the
// model has mass, as a uniform tail whose mass underflows to 0; forward KL
// with target mass on a masked logit), ErrGradOverflow. Bad options, and
// options that do not fit the target, wrap ErrOption. Never a silent NaN.
//
// # What it must not know
//
// loss is pure math over []float32. It knows nothing of models, layers,
// tokenizers, data sets, networks or clusters, and imports only kernels and
// the standard library; package engine composes logits -> loss gradient ->
// model backward (a teacher's logits come from lm's ForwardHidden and
// HeadLogits, chunk by chunk beside the student's).
package loss
