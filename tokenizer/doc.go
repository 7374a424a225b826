// Package tokenizer turns text into token ids and back: for training on
// text, for decoding sampled ids, and for measuring loss in bits per byte.
//
// # Tokenizers
//
// New(name) returns one of:
//
//   - "bytes": the ids are the bytes of the text, vocabulary 256 (what the
//     text:PATH source of package shard trains on).
//   - "gpt2": GPT-2's byte-level BPE, vocabulary 50257: the ids of
//     tiktoken's encode_ordinary with the "gpt2"/"r50k_base" encoding, the
//     call nanoGPT's prepare.py and llm.c's dev/data scripts make.
//
// Encode adds nothing to the text: no end-of-text or beginning-of-sequence
// token, and "<|endoftext|>" in the text is text (7 ordinary tokens). Id
// 50256 is the end-of-text token; it decodes to the 13 bytes
// "<|endoftext|>", as tiktoken decodes it.
//
// gpt2 cuts the text into pieces by GPT-2's pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// (matched by hand, with Go's Unicode tables: \s is White_Space, as in
// tiktoken and Python's regex), and merges each piece from its bytes: while
// two adjacent parts concatenated are a token, the pair giving the token of
// lowest id merges (the leftmost on a tie). Pieces of 128 bytes or more
// merge through a heap, so a long run of one character costs O(n log n).
// Bytes that are not valid UTF-8 are characters of their own, neither
// letter, number nor space (tiktoken would replace them with U+FFFD; GPT-2
// cannot take them at all), so any bytes encode and decode back unchanged.
//
// Decode takes any ids in the vocabulary, also a sequence that stops inside
// a UTF-8 character (the bytes are then returned as they are); an id
// outside it is an error (ErrTokenRange) naming the id and its position.
// TokenBytes(id) is len(Decode([id])): summed over the targets of an
// evaluation (CountBytes), it is the number of bytes they stand for, and
// bits per byte = (sum of the targets' losses in nats) / ln 2 / that
// number, whatever the set of targets.
//
// How the encoding was checked (tokenizer_test.go, testdata/README.md): the
// vocabulary, serialized as a .tiktoken file, has the SHA-256 OpenAI
// publishes for r50k_base.tiktoken; the ids tiktoken's tests publish;
// testdata/stress.txt (edge cases and random text over every character
// class) against an independent encoder written after GPT-2's own
// encoder.py with Python's regex module; and the repository's documentation
// against tiktoken-go's encoder, whose pattern matcher is regexp2.
//
// # Long texts
//
// Both tokenizers implement Cutter: Cut finds a place where the text may be
// cut without changing its encoding (for gpt2, between two characters of
// different classes, the first neither whitespace nor an apostrophe).
// EncodeProgress encodes a text in pieces of about ProgressChunk bytes
// and reports the bytes done after each; EncodeFile reads a text file,
// encodes it that way, and keeps the ids in a cache folder:
//
//	<cache>/<text's SHA-256>.<tokenizer>.v1.bin   the ids, an llm.c token file
//	<cache>/<text's SHA-256>.<tokenizer>.v1.json  its record
//
// The record names the version, the tokenizer, its vocabulary, the text's
// SHA-256 and length, the number of ids and the SHA-256 of the .bin. An
// entry is used only if all of it checks out (and shard parses the .bin);
// otherwise it is ignored, the reason logged, and rebuilt. Both files are
// written atomically (temporary file, fsync, rename), the .bin first, so a
// crash leaves no entry that looks whole. The .bin is a token file shard's
// tokens:PATH source maps (Encoded.CachePath), with a vocabulary of at most
// 65536.
//
// Tokenizers are immutable once built and safe for concurrent use. New
// ("gpt2") takes about 20 ms and 5 MB (and, once per process, tiktoken-go
// builds its own map of the vocabulary, a few MB more); build one and share
// it. On the project's 2-core test machine, Encode runs at about 30 MB/s
// on the repository's own source and prose (BenchmarkEncode; tiktoken-go's
// own encoder, at about 2.5 MB/s there, is not used) and Decode at about
// 200 MB/s.
//
// # What it must not know
//
// Models, losses, the cluster, the network; of data sets it knows only
// shard's token-file format (which it writes and reads), not their windows
// or batches.
// It never downloads anything: the vocabulary is compiled in.
//
// # License of the vocabulary
//
// GPT-2's vocabulary (encoder.json and vocab.bpe, Copyright (c) 2019
// OpenAI, released with GPT-2 under its Modified MIT License) is the same
// ranks as tiktoken's r50k_base.tiktoken. It is embedded as Go source by the
// module github.com/tiktoken-go/tokenizer (MIT License, Copyright (c) 2023
// tiktoken-go), from which this package takes only the vocabulary; that
// module's dependency github.com/dlclark/regexp2 is MIT-licensed too. All
// three licenses are permissive: keep their notices with binaries that are
// distributed.
package tokenizer
