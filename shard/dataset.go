package shard

import (
	"encoding/binary"
	"fmt"
	"github.com/klring/klring/internal/mmap"
	"os"
	"sync"
)

// llm.c's token file header: 256 little-endian int32, of which the first
// three are the magic, the version and the number of tokens.
const (
	llmcHeaderBytes = 1024
	llmcMagic       = 20240520
	llmcVersion     = 1
)

// Dataset is a corpus cut into windows of Ctx+1 tokens at stride Ctx, split
// into training and held-out windows. Window w holds the tokens at positions
// w*Ctx .. w*Ctx+Ctx of the corpus; the tokens after the last whole window
// are not used.
//
// Every method may be called from many goroutines at once. Close releases a
// mapped file; no method may be called after it.
type Dataset struct {
	source string
	ctx    int
	vocab  int

	data  []byte // the tokens: bytes (width 1) or little-endian uint16 (width 2)
	width int
	unmap func() error

	nWin  int     // windows
	nVal  int     // held-out windows
	train []int32 // ids of the training windows, ascending
	seed  uint64
	syn   *synth // nil unless synthetic
	fp    Fingerprint

	mu    sync.Mutex
	cache [2]epochPerm // the last two epochs' orders
	last  int          // the slot used last
}

// epochPerm is the order of the training windows in one epoch.
type epochPerm struct {
	epoch uint64
	ids   []int32
	valid bool
}

// Open validates o and opens its source: it generates the synthetic corpus,
// or maps a file into memory (a file's tokens never go onto the heap; the
// dataset keeps 4 bytes per training window, plus two epoch orders of as
// much).
func Open(o Options) (*Dataset, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	k, path, _ := parseSource(o.Source)
	d := &Dataset{source: o.Source, ctx: o.Ctx, seed: o.Seed, unmap: func() error { return nil }}
	var err error
	switch k {
	case kindSynthetic:
		d.openSynthetic(o)
	case kindText:
		err = d.openFile(path, o, 1)
	case kindTokens:
		err = d.openFile(path, o, 2)
	}
	if err != nil {
		return nil, err
	}
	if err := d.split(o.ValFraction); err != nil {
		d.Close()
		return nil, fmt.Errorf("%s: %w", o.Source, err)
	}
	d.fp = d.fingerprint(k, o)
	return d, nil
}

func (d *Dataset) openSynthetic(o Options) {
	sy := newSynth(o)
	d.syn, d.vocab = sy, o.Vocab
	d.width = 1
	if o.Vocab > 256 {
		d.width = 2
	}
	d.data = make([]byte, o.Tokens*d.width)
	if d.width == 1 {
		sy.generate(o.Seed, o.Tokens, func(i, t int) { d.data[i] = byte(t) })
	} else {
		sy.generate(o.Seed, o.Tokens, func(i, t int) { binary.LittleEndian.PutUint16(d.data[2*i:], uint16(t)) })
	}
}

// openFile maps a text file (width 1) or a token file (width 2) and checks
// it.
func (d *Dataset) openFile(path string, o Options, width int) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("opening %s: not a regular file", path)
	}
	size := st.Size()
	if size == 0 {
		return fmt.Errorf("%s: %w", path, ErrEmpty)
	}
	mapped, unmap, err := mmap.File(f, size)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			unmap()
		}
	}()
	d.unmap, d.width, d.data = unmap, width, mapped
	if width == 2 {
		if d.data, err = tokenPayload(mapped); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	n := len(d.data) / width
	// Check the ids (a pass over the mapped pages, nothing on the heap).
	maxID := 0
	limit := o.Vocab
	if limit == 0 {
		limit = 1 << (8 * width)
	}
	for i := range n {
		t := d.tok(i)
		if t >= limit {
			return fmt.Errorf("%s: token %d at position %d, vocab %d: %w", path, t, i, limit, ErrTokenRange)
		}
		maxID = max(maxID, t)
	}
	d.vocab = o.Vocab
	switch {
	case d.vocab != 0:
	case width == 1:
		d.vocab = 256
	default:
		d.vocab = maxID + 1
	}
	return nil
}

// IsLLMC reports whether b, the start of a file, begins with llm.c's
// token-file magic (a nanoGPT file, headerless, has nothing to tell it by).
func IsLLMC(b []byte) bool {
	return len(b) >= 4 && binary.LittleEndian.Uint32(b) == llmcMagic
}

// tokenPayload tells llm.c's format (the magic in the first int32) from
// nanoGPT's headerless one and returns the token bytes.
func tokenPayload(b []byte) ([]byte, error) {
	if IsLLMC(b) {
		if len(b) < llmcHeaderBytes {
			return nil, fmt.Errorf("llm.c header truncated: %d of %d bytes: %w", len(b), llmcHeaderBytes, ErrHeader)
		}
		if v := int32(binary.LittleEndian.Uint32(b[4:])); v != llmcVersion {
			return nil, fmt.Errorf("llm.c header version %d, want %d (uint16 tokens): %w", v, llmcVersion, ErrHeader)
		}
		count := int64(int32(binary.LittleEndian.Uint32(b[8:])))
		have := int64(len(b) - llmcHeaderBytes)
		switch {
		case count < 0:
			return nil, fmt.Errorf("llm.c header token count %d: %w", count, ErrHeader)
		case have%2 != 0:
			return nil, fmt.Errorf("%d bytes after the llm.c header: %w", have, ErrOddSize)
		case have/2 != count:
			return nil, fmt.Errorf("llm.c header says %d tokens, the file holds %d: %w", count, have/2, ErrHeader)
		case count == 0:
			return nil, fmt.Errorf("llm.c file with no tokens: %w", ErrEmpty)
		}
		return b[llmcHeaderBytes:], nil
	}
	if len(b)%2 != 0 {
		return nil, fmt.Errorf("%d bytes: %w", len(b), ErrOddSize)
	}
	// A headerless file whose first bytes are an llm.c header in all but
	// its magic (version 1, the count of the tokens after 1024 bytes) is a
	// damaged llm.c file: read as nanoGPT's, its header would train as
	// 512 tokens.
	if len(b) > llmcHeaderBytes && binary.LittleEndian.Uint32(b[4:]) == llmcVersion &&
		int64(binary.LittleEndian.Uint32(b[8:])) == int64(len(b)-llmcHeaderBytes)/2 {
		return nil, fmt.Errorf("an llm.c header (version %d, %d tokens) with magic %d, want %d: %w",
			llmcVersion, (len(b)-llmcHeaderBytes)/2, binary.LittleEndian.Uint32(b), llmcMagic, ErrHeader)
	}
	return b, nil
}

// split counts the windows and chooses the held-out ones: round(f*n) of
// them (at least one when f > 0), evenly spaced, the same for every seed.
func (d *Dataset) split(f float64) error {
	n := len(d.data) / d.width
	if n < d.ctx+1 {
		return fmt.Errorf("%d tokens, a window needs %d: %w", n, d.ctx+1, ErrTooShort)
	}
	d.nWin = (n - 1) / d.ctx
	if d.nWin > maxWindows {
		return fmt.Errorf("%d windows of %d tokens, at most %d: %w", d.nWin, d.ctx+1, maxWindows, ErrOptions)
	}
	v := int(f*float64(d.nWin) + 0.5)
	if f > 0 && v == 0 {
		v = 1
	}
	if v >= d.nWin {
		return fmt.Errorf("val_fraction %v of %d windows leaves none to train on: %w", f, d.nWin, ErrNoTrain)
	}
	d.nVal = v
	d.train = make([]int32, 0, d.nWin-v)
	for i := range d.nWin {
		if !d.IsHeldOut(i) {
			d.train = append(d.train, int32(i))
		}
	}
	return nil
}

// Close unmaps a mapped file. It is safe to call more than once.
func (d *Dataset) Close() error {
	if d.unmap == nil {
		return nil
	}
	err := d.unmap()
	d.unmap, d.data = nil, nil
	return err
}

// tok returns the token at corpus position i.
func (d *Dataset) tok(i int) int {
	if d.width == 1 {
		return int(d.data[i])
	}
	return int(binary.LittleEndian.Uint16(d.data[2*i:]))
}

// Source returns the source the dataset was opened from ("synthetic" for the
// default).
func (d *Dataset) Source() string { return d.source }

// Ctx returns T: a window holds Ctx()+1 tokens.
func (d *Dataset) Ctx() int { return d.ctx }

// Vocab returns the vocabulary: every token id is below it.
func (d *Dataset) Vocab() int { return d.vocab }

// NumTokens returns the length of the corpus.
func (d *Dataset) NumTokens() int { return len(d.data) / d.width }

// NumWindows returns the number of windows, training and held-out.
func (d *Dataset) NumWindows() int { return d.nWin }

// NumTrain returns the number of training windows: the length of an epoch.
func (d *Dataset) NumTrain() int { return len(d.train) }

// NumVal returns the number of held-out windows.
func (d *Dataset) NumVal() int { return d.nVal }

// IsHeldOut says whether window id is held out. It panics if id is not a
// window.
func (d *Dataset) IsHeldOut(id int) bool {
	d.checkID(id)
	v, n, i := int64(d.nVal), int64(d.nWin), int64(id)
	return (i*v)/n != ((i+1)*v)/n
}

// TrainWindows returns the ids of the training windows, ascending.
func (d *Dataset) TrainWindows() []int {
	out := make([]int, len(d.train))
	for i, id := range d.train {
		out[i] = int(id)
	}
	return out
}

// ValWindows returns the ids of the held-out windows, ascending.
func (d *Dataset) ValWindows() []int {
	out := make([]int, 0, d.nVal)
	for i := range d.nWin {
		if d.IsHeldOut(i) {
			out = append(out, i)
		}
	}
	return out
}

// AllWindows returns the ids of every window, 0..NumWindows()-1.
func (d *Dataset) AllWindows() []int {
	out := make([]int, d.nWin)
	for i := range out {
		out[i] = i
	}
	return out
}

func (d *Dataset) checkID(id int) {
	if id < 0 || id >= d.nWin {
		panic(fmt.Sprintf("shard: window %d out of range [0, %d)", id, d.nWin))
	}
}

// Window writes the Ctx()+1 tokens of window id to dst[:Ctx()+1]: the inputs
// are dst[:Ctx()], the target of input t is dst[t+1]. It panics if id is not
// a window or dst is shorter than Ctx()+1. It allocates nothing.
func (d *Dataset) Window(id int, dst []int32) {
	d.checkID(id)
	n := d.ctx + 1
	if len(dst) < n {
		panic(fmt.Sprintf("shard: Window dst has %d entries, want %d", len(dst), n))
	}
	dst = dst[:n]
	lo := id * d.ctx
	if d.width == 1 {
		for i, b := range d.data[lo : lo+n] {
			dst[i] = int32(b)
		}
		return
	}
	src := d.data[2*lo : 2*(lo+n)]
	for i := range dst {
		dst[i] = int32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}
