// Package teacherstore keeps a teacher model's top-k next-token
// distribution over every window of a data source in one memory-mapped
// file, so that distillation can train from it without running the teacher:
// Dump writes a store (coordinator teacher-dump), Open maps one, Check
// compares it with what a run needs, Digest tells two copies apart, and
// Targets fills a batch's sparse targets for loss (loss.Target{SparseIDs,
// SparseProbs, K}), cut to any k up to the store's (the rows are sorted,
// so their first k entries are the teacher's top k).
//
// # What a store holds
//
// For window w of the data (the windows of Ctx+1 tokens at stride Ctx, as
// shard cuts them: every window, training and held-out alike) and position
// t in 0..Ctx-1, the teacher's distribution of the token after w*Ctx+t given
// the window's tokens up to it, P = softmax(logits / Temperature): the ids
// of its K largest logits in decreasing order (ties to the lower id, the
// selection of loss's fused passes, loss.TopK), their probabilities, and
// the mass of the other ids (1 - their sum, summed over those ids so that
// a rest of 1e-20 keeps its digits).
//
// A store is keyed by the SHA-256 of the teacher's model.safetensors and by
// the data's fingerprint with its seed and held-out fraction zeroed
// (DataKey: kind, bytes, SHA-256, tokens, vocab and ctx of the token
// source), so one store serves every data.seed and data.val_fraction of the
// same source and ctx. For synthetic data the corpus itself depends on the
// seed; the SHA-256 of the corpus keys that.
//
// # Format (version 1), all little-endian
//
//	offset  size  field
//	0       8     magic "KLRTOPK\n"
//	8       4     format version (1)
//	12      4     header size (4096)
//	16      4     CRC-32C (Castagnoli) of the 4096 header bytes with this field zero
//	20      4     id bytes: 2 (uint16, vocab <= 65536) or 4 (uint32)
//	24      4     value type: 1 float32, 2 float16 (IEEE binary16)
//	28      4     vocab: the teacher's vocabulary, every id below it
//	32      4     ctx: T, positions per window
//	36      4     k: entries per position, 1..vocab
//	40      8     temperature (float64) the probabilities were taken at
//	48      8     windows: (data tokens - 1) / ctx
//	56      8     windows written; equal to windows in a complete store
//	64      32    teacher SHA-256 (of its model.safetensors)
//	96      32    data SHA-256
//	128     16    data kind: synthetic, text or tokens, NUL-padded
//	144     8     data bytes
//	152     8     data tokens
//	160     4     data vocab (<= vocab)
//	164     4     data ctx (= ctx)
//	168     3928  zero
//	4096    4*W   CRC-32C of each window's record
//	D             records of windows 0..W-1, D = 4096 + 4*W rounded up to 4096
//
// A window's record is R = T*(k*(id bytes + value bytes) + 4) bytes: the
// T*k ids (position 0's k ids, then position 1's, ...), the T*k
// probabilities in the value type, then T float32 rest masses. The file is
// D + W*R bytes long.
//
// float16 halves the probabilities (4 bytes per entry with uint16 ids
// instead of 6): each is rounded to 11 significant bits (relative error up
// to 4.9e-4), values below 6e-8 to 0. Rows scales a float16 row back so
// that it sums to 1 - rest, the mass the teacher's top k held. A listed
// probability of 0 makes reverse KL against a renormalized top k infinite:
// loss refuses that combination without label smoothing anyway.
//
// # Writing: atomic and resumable
//
// A Writer writes PATH.partial: the file is sized at once, records and
// their checksums are written in window order, and Sync makes them durable
// (fsync) before it records their number in the header (fsync again). A
// Writer created for the same PATH and header after a stop or a crash reads
// back the windows the header records and continues after the last intact
// one: the first window cut off (a file shorter than its header implies) or
// failing its checksum, and every window after it, are written again. A
// different or damaged header is refused, naming the fields (remove the
// file to start over). Finish reads the complete store back and verifies
// its header, length and every window's checksum before it renames it to
// PATH, so PATH is only ever a complete store that passed; one that fails
// stays at PATH.partial, to be continued from its first damaged window. A
// damaged store at PATH is not written over: Dump refuses it, saying to
// remove it.
//
// # Reading
//
// Open maps a complete store read-only and checks the magic, version,
// header checksum, every field, and that the file is exactly as long as the
// header implies; Rows (and Targets, which lays a batch's windows out as
// engine does) verify a window's checksum before they decode it, so a
// damaged window is an error naming it, never a wrong target. Verify checks
// every window.
//
// # What it must not know
//
// teacherstore knows lm (to run the teacher in Dump), loss (its top-k
// selection) and shard (windows and fingerprints). It knows nothing of
// engine, networks, clusters, configuration or the command line; engine
// calls Targets and the cluster layer Check.
package teacherstore
