// Package engine composes the model, the loss and the data: for a list of
// window ids it runs the model, turns each chunk of logits into the loss's
// gradient, and backpropagates, accumulating the gradient of the SUM of the
// per-token losses (Gradient); it evaluates a model on held-out windows
// (cross-entropy, and with synthetic data the exact KL to the true
// distribution and the entropy floor); and it evaluates and samples from
// checkpoints for the command line.
//
// Over a large vocabulary (GPT-2's) plain training on the next tokens
// takes its cross-entropy block by block of the vocabulary while each block
// of logits is in cache (lm.BlockCE), where every other loss
// gets whole rows of logits from the model; both give the loss package's
// sums and gradient (TestBlockCEMatchesLossPackage), the blocks 7-12%
// faster at one thread (BenchmarkStepGPT2Vocab).
//
// engine is where logits meet targets. lm and loss do not know each other;
// engine knows both, and shard's windows, but nothing of networks, the
// protocol or the run's files. The cluster runtime (workers and the
// coordinator) and the command line use it.
package engine
