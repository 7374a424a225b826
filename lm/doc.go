// Package lm is the model of klring: a GPT-2 exactly as llm.c's train_gpt2.c
// computes it (token and position embeddings, pre-LayerNorm blocks of causal
// self-attention and a tanh-GELU MLP of width 4C, a final LayerNorm, the head
// tied to the token embedding, LayerNorm epsilon 1e-5, no dropout), with its
// hand-written backward pass, initialisation, AdamW and SGD, gradient
// clipping, learning-rate schedules, sampling and checkpoints in the Hugging
// Face GPT-2 layout.
//
// # Dimensions
//
//	B    sequences in a batch
//	T    tokens per sequence (1 <= T <= Config.Ctx)
//	N    rows, B*T; row = b*T + t
//	C    channels (Config.NEmbd)
//	V    vocabulary (Config.Vocab)
//	Vp   rows of wte in memory, V padded (Config.PaddedVocab)
//	L    transformer blocks (Config.NLayer)
//	NH   attention heads (Config.NHead)
//	HS   head size, C/NH
//	maxT positions of the model (Config.Ctx)
//
// # Layout
//
// One table (Config.Layout) lists every parameter tensor in Hugging Face order
// with its key, shape, offset, weight-decay flag and initialisation. It alone
// cuts the flat Params and Grads into views (full slice expressions), sizes
// AdamW's moments, names the checkpoint keys and drives the golden checks.
// Matrices live in memory as [OC, C] (output rows, as llm.c), which the GEMM
// reads directly: out = inp @ W^T. Hugging Face's Conv1D stores them [C, OC];
// they are transposed when a checkpoint is written or read, nowhere else.
//
// The vocabulary may be padded as llm.c pads it (Config.VocabPad: 64 makes
// GPT-2's 50257 rows of wte 50304): wte holds PaddedVocab() rows in memory,
// the last of them padding (Tensor.PadRows). They are real parameters of the
// flat buffer, so Params, Grads, AdamW's moments and the vector a cluster
// all-reduces include them, but they are zero and stay zero: Init draws
// nothing for them, token ids are checked against V, the head computes the
// logits of the V real rows only (the HeadFunc sees [rows, V]; a padded id is
// never predicted, sampled or in the loss), so no pass reads or writes them
// (the views are cut to V rows), their gradient is zero and AdamW, weight
// decay included, leaves zero at zero. A padded model is the unpadded one:
// the same Init, loss and gradient of the real rows, bit for bit.
// Checkpoints hold the Hugging Face layout with V rows: Save leaves the
// padded rows out of every file, Load fills them with zero, and
// trainer_state.json records the padding (vocab_pad) so that a resumed run
// keeps the layout of its optimizer state; Model.WithVocabPad pads (or
// unpads) a loaded model.
//
// Grads has capacity NumParams()+2: a trainer takes Grads[:NumParams()+2],
// writes its loss sum and token count into the two trailing slots, and
// all-reduces one contiguous slice. lm never touches those two slots except in
// ZeroGrad, which clears them too.
//
// # Passes
//
// Layers are free functions in llm.c's argument order (outputs, caches,
// inputs, dimensions); backward functions add into their gradients. The
// activations live in one arena sized on the first pass for (B, T) and reused:
// a training step allocates nothing (the parallel loops hand one prebuilt
// closure to the pool). The head and the loss run in chunks of rows through a
// HeadFunc, so the [N, V] logits never exist at once: for each chunk the model
// computes logits = lnf[chunk] @ wte^T, the HeadFunc overwrites them with
// dL/dlogits, and the model adds d(lnf)[chunk] and d(wte) (for large
// vocabularies by blocks of 512 vocabulary rows, in fixed groups, so that each
// block of dL/dlogits serves both products while in cache). The loss is the
// caller's: backward starts from whatever the HeadFunc writes (for klring, the
// gradient of a SUM over tokens). A BlockHead (ForwardBackwardBlocks) takes
// each chunk by blocks of 512 vocabulary columns instead: the model computes
// a block's logits into a buffer in cache and the head keeps what it needs
// of them (exp(z - the block's max) for a softmax) in memory; once every
// block went through, the head has the chunk's loss, and in the backward it
// writes each block's dL/dlogits into the buffer in cache right before the
// two products read it. Over a large vocabulary the chunks hold 512 rows and
// wte is packed once per pass for the products (kernels.Pool.PackB), a chunk's
// lnf once per chunk; BlockCE, the cross-entropy of hard next-token targets
// (the benchmark's head, and the engine's for plain training over GPT-2's
// vocabulary), is such a head. Attention runs per (batch, head) in parallel and per block
// of query rows, keeping only the log-sum-exp of each row; backward
// recomputes the probabilities. With AVX2 and a head size that is a
// multiple of 16, scores, softmax and values run per 6 query rows on a tile
// kernel against exactly the keys of their causal mask (attn_fast.go).
//
// The training step is fused (fused.go): every product of a layer's rows
// hands its finished rows to an epilogue (kernels.Pool.SgemmThen) while they
// are in cache: the bias, GELU, the residual add and the next LayerNorm in
// the forward pass, GELU's and LayerNorm's backward in the backward pass. No
// separate pass over [N, 4C] or [N, C] remains for them. The per-op times of
// BenchmarkTrainStepOps come from timers the model marks between ops.
//
// Matrix products go through kernels.Pool.Sgemm, so a faster kernel changes
// no code here. All parallel loops write disjoint outputs and sum in a fixed
// order, so results do not depend on how the work is split. The element-wise
// kernels (GELU, exp, the softmax rows, LayerNorm rows, AdamW, the gradient
// norm) have AVX2 versions in fastmath_avx2_amd64.s and rows_avx2_amd64.s
// beside their Go loops and are tested against them (-tags purego runs
// everything on the Go loops); with AVX-512 F/DQ/BW/VL most of them run
// 16 floats at a time (fastmath_avx512_amd64.s, rows_avx512_amd64.s) with
// the AVX2 kernels' operations and summation order, so they give the AVX2
// bits (TestAVX512MatchesAVX2). AdamW and ClipGradNorm round every product on
// its own (no fused multiply-add) and sum the gradient norm in a fixed order
// (blocks of 16384 in order, 16 lanes within a block), so replicas on
// different CPUs and thread counts apply bit-identical updates;
// AdamW.StepClip fuses the clip into the update and leaves the same bits as
// ClipGradNorm then Step.
//
// # What lm must not know
//
// lm knows nothing of losses beyond BlockCE's plain cross-entropy (it does
// not import loss/; HeadFunc and BlockHead are the seams), of data sets, networks, clusters or configuration files other than
// the Hugging Face config.json of a checkpoint.
package lm
