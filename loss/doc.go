// Package loss computes KL-divergence losses of a language model's logits and
// their exact gradients, fused with the softmax: the training loss of klring.
//
// # What it computes
//
// The logits z are row-major float32 [rows x vocab] (dimension letters as in
// lm: rows = B*T positions, vocab = V). For every row, Q = softmax(z/T) is
// the model's distribution and P the target's:
//
//	Forward  D_KL(P||Q) = sum_i p_i (log p_i - log q_i)       (PyTorch's F.kl_div(log_softmax(z/T), P))
//	Reverse  D_KL(Q||P) = sum_i q_i (log q_i - log p_i)
//	JSD      beta*D_KL(P||M) + (1-beta)*D_KL(Q||M),  M = beta*P + (1-beta)*Q
//
// with 0 log 0 = 0. With s = z/T, the gradients are
//
//	Forward  dL/ds_j = q_j*S - p_j                  (S = sum_i p_i; q - p for a distribution)
//	Reverse  dL/ds_j = q_j (log q_j - log p_j - D_KL(Q||P))
//	JSD      dL/ds_j = (1-beta) q_j (log q_j - log m_j - D_KL(Q||M))
//
// and dL/dz = dL/ds / T. With Options.ScaleT2 loss and gradient are
// multiplied by T^2. Every row's gradient sums to 0.
//
// Targets (Target, exactly one kind): hard token ids, where forward KL is
// the cross-entropy (label smoothing makes P = (1-eps)*onehot + eps/V, and
// the loss is then the cross-entropy minus the entropy of P; rows whose id is
// Options.IgnoreIndex count nothing); dense probabilities; dense
// log-probabilities; sparse top-k rows of (id, probability). A sparse row
// summing to 1 within 1e-3 is complete (unlisted ids get 0); one summing to
// less keeps the cut-off mass as a uniform tail over the unlisted ids (see
// Target). Results are per-row sums (Result, rowLoss); Reduce applies
// PyTorch's reductions sum, batchmean and mean (element mean), and GradScale
// gives the matching gradient scale.
//
// # How
//
// Each row is done by one goroutine, with the gradient written over the
// logits (no second rows x vocab buffer) scaled by an explicit gradScale, so
// a data-parallel caller passes 1/(global token count) and gets its share of
// the global mean directly. Rows are split over a kernels.Pool; per-row
// losses are summed in row order afterwards, so results do not depend on the
// split, and the first bad row is the one reported. A Computer owns its
// scratch and allocates nothing per call in the steady state.
//
// Two paths compute a row (fast.go, loss.go):
//
//   - Fast paths: forward KL with hard, dense (probabilities or
//     log-probabilities) and sparse targets; reverse KL with dense targets
//     of positive normal probabilities; JSD with dense targets; all on rows
//     of finite logits. The
//     row is read from memory once, by a pass that finds max, min and sum
//     (the shift, and proof the row is finite); the other passes run on the
//     row while it sits in L1/L2 (16 KiB at V = 4096): exp(z/T - max/T)
//     with its float64 sum, in place, then the gradient as one scale-and-add
//     (q*S - p). One exp per element; the loss comes from float64 sums
//     (sum p log p, sum p*z, log-sum-exp). The row kernels live in kernels
//     (ExpSum, XLogXDot, ...: AVX-512 or AVX2 assembly chosen at run time,
//     portable Go elsewhere) and prefetch the next row while they compute.
//     Two passes over a cached row cost less than an online (rescaling)
//     softmax, which needs a second exp per element in vector form.
//   - The reference path, float64 throughout, with an online maximum and
//     log-sum-exp in one pass over the row: hard and sparse targets for
//     reverse KL and JSD, masked (-Inf) logits, |z/T| > 1e6, and every row a
//     fast path declines. It validates the row and names the exact error.
//
// Accuracy: the fast paths use a float32 exp and log (within 2 ulp), so a
// row's loss is within about 1e-6 absolute of the float64 value and
// gradients within 1e-6 absolute (reverse KL and JSD: their gradients,
// q*(log q - log p - KL) and the like, cancel in float32, so within about
// 1e-4 relative); the tests hold both paths to PyTorch's
// float64 values (../../shared/golden/kl_torch.json) and to each other.
//
// # Errors
//
// Shape mismatches (slice lengths, two target kinds) are programmer errors
// and panic with the prefix "loss:". Bad data returns a *RowError naming the
// first bad row and wrapping a sentinel: ErrNonFiniteLogit (NaN or +Inf;
// -Inf masks a token), ErrAllMasked, ErrNegativeProb, ErrProbSum (not 1
// within 1e-3), ErrTokenRange, ErrDuplicateID, ErrInfiniteKL (reverse KL
// with target mass 0 where the model has mass, forward KL with target mass
// on a masked logit), ErrGradOverflow. Bad options wrap ErrOption. Never a
// silent NaN.
//
// # What it must not know
//
// loss is pure math over []float32. It knows nothing of models, layers,
// tokenizers, data sets, networks or clusters, and imports only kernels and
// the standard library; the cluster layer composes logits -> loss gradient ->
// model backward.
package loss
