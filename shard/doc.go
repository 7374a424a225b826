// Package shard turns a corpus into windows, global batches and per-rank
// shards, so that data parallelism changes nothing but speed.
//
// # Sources
//
// Options.Source names one of three sources:
//
//   - "synthetic" (the default): a seeded random language whose true
//     next-token distribution is known exactly at every position (see below);
//     "synthetic:modes=2,vocab=128" sets Options fields from the source
//     string (vocab, classes, successors, tokens, modes). With modes = G the
//     successors of every context fall into G groups over disjoint regions
//     of the vocabulary, each holding mass 1/G: the language where
//     mode-seeking and mass-covering fits differ.
//   - "text:PATH": the bytes of a file, vocabulary 256.
//   - "tokens:PATH": uint16 little-endian token ids, either headerless
//     (nanoGPT's train.bin) or llm.c's format: a 1024-byte header of 256
//     int32, of which header[0] is the magic 20240520, header[1] the version
//     (1: uint16 tokens) and header[2] the token count, then the tokens. The
//     two are told apart by the magic in the first four bytes (a headerless
//     file would need tokens 55432, 308 at its start to look like it).
//
// WriteTokenFile and WriteTokens write both formats (atomically), ReadTokenFile
// and ParseTokens read them onto the heap; Fingerprint identifies what a
// dataset's windows are (its bytes' SHA-256, size, ctx, seed, held-out
// fraction), so that a resume or a worker on other data is refused.
//
// Files are memory-mapped, never read onto the heap: what a dataset keeps on
// the heap is 4 bytes per training window and two epoch orders of as much.
// A file must not change while it is open. Open checks every token id once
// (a pass over the mapped pages) and reports bad files with errors that
// errors.Is matches: ErrEmpty, ErrOddSize, ErrTokenRange, ErrHeader,
// ErrTooShort, ErrNoTrain.
//
// # Windows, epochs, batches, shards
//
// The corpus is cut into windows of Ctx+1 tokens at stride Ctx: window w is
// tokens w*Ctx .. w*Ctx+Ctx, its inputs the first Ctx, its targets the last
// Ctx. Tokens after the last whole window are unused.
//
// A fraction Options.ValFraction of the windows is held out: round(f*n) of
// them (at least one when f > 0), evenly spaced (window i is held out when
// floor(i*v/n) != floor((i+1)*v/n)), whatever the seed, so runs with
// different seeds evaluate on the same windows of a file. A held-out window
// shares its first token with a training window's last target; none of its
// targets is ever a training target.
//
// Epoch e is a permutation of the training windows seeded by (Seed, e). The
// stream of training windows is epoch 0's order, then epoch 1's, and so on;
// global batch k is the next G windows of the stream. A batch that reaches
// the end of an epoch wraps into the next epoch's order, so every batch has
// exactly G windows (the global batch, and with it the meaning of a step,
// never changes) and every epoch still visits every training window exactly
// once. A Cursor{Epoch, Pos} marks a place in the stream; it is JSON for
// checkpoints and, with the same Options, restores the exact stream in any
// process. NextBatch(cursor, G) returns the batch and the next cursor.
//
// Shard(batch, rank, n) is rank's contiguous slice of a batch among n ranks;
// the first len(batch)%n ranks get one window more. It depends only on the
// batch, rank and n, so a step retried with fewer ranks covers the same
// windows.
//
// # The synthetic source
//
// An order-2 Markov chain over V tokens (Options.Vocab, default 64) that
// sees the token two back only through its class, one of M (Options.Classes,
// default 4; the classes are a random balanced partition). Each context
// (class of x[t-2], x[t-1]) has S successors (Options.Successors, default
// 4) with probabilities drawn from a Dirichlet(1): the first successor of
// (m, b) is sigma_m(b) for a random cycle sigma_m through all tokens (so the
// chain is irreducible and uses the whole vocabulary), the others are random.
// The corpus (Options.Tokens, default 2^20: 8191 windows of 128, about 500
// steps of 16 windows per epoch) starts in a state drawn from the chain's
// stationary distribution, so every position is stationary.
//
// Why this source: the truth is exact and cheap; it needs context, since the
// best model that sees one token loses about a nat per token to the truth
// (default seed: bigram loss 2.143, entropy rate 1.067 nats/token), yet it
// stays learnable by a tiny GPT: the class of the token two back is a linear
// feature of its embedding, one attention step back, and there are only M*V
// = 256 contexts (a full order-2 table would have 4096, too many to see often
// in a few hundred steps). A vocabulary of 64 keeps embeddings and the
// softmax small; every token appears about 16,000 times in the corpus.
// Measured through the cluster's simulation mode (one worker, the tiny
// preset: C 128, 4 layers, ctx 128, 16 windows a step, soft targets, AdamW
// with its default cosine schedule, 2 shared cores): the held-out KL from
// the truth is at the bigram level (about 1.1 nats) near step 100, falls
// once the model uses the token two back, and is 0.04 at step 350 and 0.029
// at step 400, after 120 s.
//
// Truth(id, ids, probs) writes, for each target of a window, the true
// distribution given the window's tokens before it, as K = TruthK() sparse
// (id, probability) entries padded with probability 0. The first target of a
// window sees one token; its truth is the mixture over the unseen class of
// the token before, weighted by the stationary distribution (found by power
// iteration to 1e-15). The other targets' truth is the transition row.
// EntropyFloor(windows) is the mean entropy of those rows: the expected loss
// no model can beat, and what a model's cross-entropy exceeds by its mean KL
// from the truth. Stats gives the exact stationary entropy rate, bigram and
// unigram losses.
//
// # What shard must not know
//
// Models, losses, networks, ranks' addresses or the cluster: it hands out
// window ids and tokens. It imports only the standard library and
// internal/mmap.
package shard
