package tokenizer

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of package tokenizer, tested with errors.Is.
var (
	ErrUnknown    = errors.New("tokenizer: unknown tokenizer")
	ErrTokenRange = errors.New("tokenizer: token id outside the vocabulary")
	ErrCache      = errors.New("tokenizer: bad token cache")
)

// Tokenizer turns text into token ids and back. Implementations are
// immutable after construction and safe for concurrent use.
type Tokenizer interface {
	// Name is the name New knows the tokenizer by ("bytes", "gpt2").
	Name() string
	// Vocab is V: every id Encode returns, and every id Decode takes, is in
	// [0, V).
	Vocab() int
	// Encode returns the ids of text: no end-of-text or beginning token is
	// added. Any bytes, also invalid UTF-8, encode, and Decode(Encode(text))
	// is text again, byte for byte.
	Encode(text []byte) []int32
	// Decode returns the bytes of ids, concatenated. Any sequence of ids in
	// [0, V) decodes, also one that splits a UTF-8 character (the result is
	// then not valid UTF-8). An id outside [0, V) is an error (ErrTokenRange)
	// naming the id and its position.
	Decode(ids []int32) ([]byte, error)
	// TokenBytes is the number of bytes id decodes to (len(Decode([id]))),
	// or -1 if id is outside [0, V). Summed over a set of target tokens it is
	// the number of bytes those targets stand for: bits per byte is their
	// cross-entropy in bits divided by that sum.
	TokenBytes(id int32) int
}

// Cutter is implemented by tokenizers that can tell where text may be cut
// without changing its encoding, so a long text can be encoded in pieces
// (EncodeProgress). Both tokenizers of this package implement it.
type Cutter interface {
	// Cut returns the smallest position p >= from at which the encoding of
	// text is the encoding of text[:p] followed by that of text[p:], or
	// len(text) if there is none. from must be in [0, len(text)].
	Cut(text []byte, from int) int
}

func checkFrom(text []byte, from int) {
	if from < 0 || from > len(text) {
		panic(fmt.Sprintf("tokenizer: Cut from %d outside [0, %d]", from, len(text)))
	}
}

// Names of the tokenizers New knows.
const (
	NameBytes = "bytes" // ids are bytes, vocabulary 256
	NameGPT2  = "gpt2"  // GPT-2's byte-level BPE (r50k_base), vocabulary 50257
)

// Names returns the names New knows, in a fixed order.
func Names() []string { return []string{NameBytes, NameGPT2} }

// New returns the tokenizer called name: "bytes" (ids are bytes, vocabulary
// 256) or "gpt2" (GPT-2's byte-level BPE, vocabulary 50257). Building gpt2's
// tables takes about 20 ms and 5 MB; build it once and share it.
func New(name string) (Tokenizer, error) {
	switch name {
	case NameBytes:
		return bytesTokenizer{}, nil
	case NameGPT2:
		return newGPT2()
	}
	return nil, fmt.Errorf("tokenizer %q, want one of %s: %w", name, strings.Join(Names(), ", "), ErrUnknown)
}

// CountBytes returns the number of bytes ids decode to: the sum of
// TokenBytes. An id outside the vocabulary is an error naming it and its
// position.
func CountBytes(tok Tokenizer, ids []int32) (int64, error) {
	var n int64
	for i, id := range ids {
		b := tok.TokenBytes(id)
		if b < 0 {
			return 0, rangeError(tok, id, i)
		}
		n += int64(b)
	}
	return n, nil
}

func rangeError(tok Tokenizer, id int32, pos int) error {
	return fmt.Errorf("token %d at position %d is not in %s's vocabulary [0, %d): %w", id, pos, tok.Name(), tok.Vocab(), ErrTokenRange)
}

// ProgressChunk is the amount of text EncodeProgress encodes between two
// progress reports (more where the tokenizer finds no place to cut).
const ProgressChunk = 256 << 10

// EncodeProgress returns tok.Encode(text), encoding it in pieces of about
// ProgressChunk bytes cut where the tokenizer allows (see Cutter), so the
// result is the same. After each piece it calls progress (if not nil) with
// the bytes done and len(text), and it stops with ctx's error if ctx is
// done. A tokenizer that is not a Cutter encodes text in one piece.
func EncodeProgress(ctx context.Context, tok Tokenizer, text []byte, progress func(done, total int64)) ([]int32, error) {
	return encodeChunked(ctx, tok, text, ProgressChunk, progress)
}

func encodeChunked(ctx context.Context, tok Tokenizer, text []byte, chunk int, progress func(done, total int64)) ([]int32, error) {
	if chunk < 1 {
		panic(fmt.Sprintf("tokenizer: chunk %d, want at least 1", chunk))
	}
	total := int64(len(text))
	cut, ok := tok.(Cutter)
	var ids []int32
	for pos := 0; pos < len(text); {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("encoding with %s at byte %d of %d: %w", tok.Name(), pos, total, err)
		}
		end := len(text)
		if ok && pos+chunk < len(text) {
			end = cut.Cut(text, pos+chunk)
		}
		part := tok.Encode(text[pos:end])
		if ids == nil {
			// A guess at the final length: as many ids per byte as so far.
			ids = make([]int32, 0, int(float64(len(part))*float64(len(text))/float64(end-pos))+16)
		}
		ids = append(ids, part...)
		pos = end
		if progress != nil {
			progress(int64(pos), total)
		}
	}
	if ids == nil {
		ids = []int32{}
	}
	return ids, nil
}
