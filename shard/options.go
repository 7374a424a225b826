package shard

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Sentinel errors of package shard, tested with errors.Is.
var (
	ErrOptions    = errors.New("shard: invalid options")
	ErrEmpty      = errors.New("shard: empty file")
	ErrOddSize    = errors.New("shard: odd byte count in a uint16 token file")
	ErrHeader     = errors.New("shard: bad llm.c header")
	ErrTokenRange = errors.New("shard: token id out of range")
	ErrTooShort   = errors.New("shard: shorter than one window")
	ErrNoTrain    = errors.New("shard: no training windows")
	ErrCursor     = errors.New("shard: cursor out of range")
)

// Defaults of the synthetic source, used where an Options field is 0.
const (
	DefaultVocab      = 64      // synthetic vocabulary
	DefaultClasses    = 4       // classes of the token two back
	DefaultSuccessors = 4       // successors of each context
	DefaultTokens     = 1 << 20 // synthetic corpus length
)

// Limits checked by Validate.
const (
	MaxVocab     = 1 << 16 // uint16 token ids
	MaxCtx       = 1 << 20
	MaxSynTokens = 1 << 30
	maxWindows   = math.MaxInt32 // window ids travel as int32
)

// Options selects a source and how it is cut. The zero value of every field
// but Ctx means its default.
type Options struct {
	// Source is "synthetic" (also the default, ""), "text:PATH" (the bytes of
	// a file) or "tokens:PATH" (uint16 token ids: nanoGPT's headerless
	// train.bin, or llm.c's .bin with its 1024-byte header).
	Source string
	// Ctx is T, the tokens of input per window; a window holds Ctx+1 tokens
	// and windows start every Ctx tokens. Required: 1..MaxCtx.
	Ctx int
	// ValFraction of the windows is held out (never trained on), chosen
	// evenly spaced; 0 holds out nothing, any other value at least one
	// window. In [0, 1).
	ValFraction float64
	// Seed seeds the epoch order and the synthetic source. Any value.
	Seed uint64
	// Vocab: synthetic: the vocabulary (0: DefaultVocab, else 2..MaxVocab);
	// text: 0 or 256 means 256, a smaller value makes larger bytes an error;
	// tokens: 0 means the largest id in the file plus one, else every id must
	// be below it (1..MaxVocab).
	Vocab int
	// Tokens is the length of the synthetic corpus (0: DefaultTokens).
	// Synthetic only.
	Tokens int
	// Classes is M, the number of classes of the token two back that the
	// synthetic source conditions on (0: DefaultClasses, 1..Vocab). Classes =
	// 1 makes it a first-order Markov chain. Synthetic only.
	Classes int
	// Successors is S, the tokens that may follow each context of the
	// synthetic source (0: DefaultSuccessors, 1..Vocab). Synthetic only.
	Successors int
	// Modes is G, the well-separated modes of every next-token
	// distribution of the synthetic source (0 or 1: one). With G > 1 the
	// vocabulary is cut into G regions (token t in region t mod G) and the
	// S successors of every context into G groups of S/G, one per region,
	// each holding mass 1/G: a mode-seeking fit can put its mass on one
	// region, a mass-covering fit must spread it over all. S must be a
	// multiple of G. Synthetic only.
	Modes int
}

// Kind of source.
type kind int

const (
	kindSynthetic kind = iota
	kindText
	kindTokens
)

// parseSource splits a source string into its kind and path (for
// synthetic, its settings: "synthetic:modes=2,vocab=128").
func parseSource(s string) (kind, string, error) {
	switch {
	case s == "" || s == "synthetic":
		return kindSynthetic, "", nil
	case strings.HasPrefix(s, "synthetic:"):
		return kindSynthetic, strings.TrimPrefix(s, "synthetic:"), nil
	case strings.HasPrefix(s, "text:"):
		if p := strings.TrimPrefix(s, "text:"); p != "" {
			return kindText, p, nil
		}
	case strings.HasPrefix(s, "tokens:"):
		if p := strings.TrimPrefix(s, "tokens:"); p != "" {
			return kindTokens, p, nil
		}
	}
	return 0, "", fmt.Errorf("source %q, want synthetic[:SETTINGS], text:PATH or tokens:PATH: %w", s, ErrOptions)
}

// Validate reports the first field that cannot describe a dataset. It does
// not open files.
func (o Options) Validate() error {
	k, _, err := parseSource(o.Source)
	if err != nil {
		return err
	}
	if o.Ctx < 1 || o.Ctx > MaxCtx {
		return fmt.Errorf("ctx = %d, want 1..%d: %w", o.Ctx, MaxCtx, ErrOptions)
	}
	if !(o.ValFraction >= 0 && o.ValFraction < 1) {
		return fmt.Errorf("val_fraction = %v, want [0, 1): %w", o.ValFraction, ErrOptions)
	}
	if k == kindSynthetic {
		_, spec, _ := parseSource(o.Source)
		if err := (&Options{}).syntheticSettings(spec); err != nil {
			return err
		}
	}
	if k != kindSynthetic {
		for _, f := range []struct {
			name string
			v    int
		}{{"tokens", o.Tokens}, {"classes", o.Classes}, {"successors", o.Successors}, {"modes", o.Modes}} {
			if f.v != 0 {
				return fmt.Errorf("%s = %d: only the synthetic source takes it: %w", f.name, f.v, ErrOptions)
			}
		}
	}
	switch k {
	case kindText:
		if o.Vocab < 0 || o.Vocab > 256 {
			return fmt.Errorf("vocab = %d, want 0..256 for text: %w", o.Vocab, ErrOptions)
		}
	case kindTokens:
		if o.Vocab < 0 || o.Vocab > MaxVocab {
			return fmt.Errorf("vocab = %d, want 0..%d for tokens: %w", o.Vocab, MaxVocab, ErrOptions)
		}
	case kindSynthetic:
		s := o.withDefaults()
		if s.Vocab < 2 || s.Vocab > MaxVocab {
			return fmt.Errorf("vocab = %d, want 2..%d: %w", s.Vocab, MaxVocab, ErrOptions)
		}
		if s.Classes < 1 || s.Classes > s.Vocab {
			return fmt.Errorf("classes = %d, want 1..vocab (%d): %w", s.Classes, s.Vocab, ErrOptions)
		}
		if s.Successors < 1 || s.Successors > s.Vocab {
			return fmt.Errorf("successors = %d, want 1..vocab (%d): %w", s.Successors, s.Vocab, ErrOptions)
		}
		if s.Modes < 1 || s.Successors%s.Modes != 0 || s.Successors/s.Modes > s.Vocab/s.Modes {
			return fmt.Errorf("modes = %d with %d successors and vocab %d: want successors a multiple of modes, and successors/modes <= vocab/modes: %w", s.Modes, s.Successors, s.Vocab, ErrOptions)
		}
		if s.Vocab*s.Classes*s.Successors > 1<<26 {
			return fmt.Errorf("vocab x classes x successors = %d, want at most %d: %w",
				s.Vocab*s.Classes*s.Successors, 1<<26, ErrOptions)
		}
		if s.Tokens < 0 || s.Tokens > MaxSynTokens {
			return fmt.Errorf("tokens = %d, want 0..%d: %w", s.Tokens, MaxSynTokens, ErrOptions)
		}
	}
	return nil
}

// syntheticSettings applies "synthetic:key=value,..." to o: vocab, classes,
// successors, tokens and modes.
func (o *Options) syntheticSettings(spec string) error {
	if spec == "" {
		return nil
	}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			return fmt.Errorf("source synthetic:%s: %q, want key=integer: %w", spec, kv, ErrOptions)
		}
		switch k {
		case "vocab":
			o.Vocab = n
		case "classes":
			o.Classes = n
		case "successors":
			o.Successors = n
		case "tokens":
			o.Tokens = n
		case "modes":
			o.Modes = n
		default:
			return fmt.Errorf("source synthetic:%s: unknown setting %q (vocab, classes, successors, tokens, modes): %w", spec, k, ErrOptions)
		}
	}
	return nil
}

// withDefaults fills the zero fields of a synthetic source.
func (o Options) withDefaults() Options {
	k, spec, _ := parseSource(o.Source)
	if k != kindSynthetic {
		return o
	}
	if o.Source == "" {
		o.Source = "synthetic"
	}
	o.syntheticSettings(spec)
	if o.Modes == 0 {
		o.Modes = 1
	}
	if o.Vocab == 0 {
		o.Vocab = DefaultVocab
	}
	if o.Classes == 0 {
		o.Classes = DefaultClasses
	}
	if o.Successors == 0 {
		o.Successors = DefaultSuccessors
	}
	if o.Tokens == 0 {
		o.Tokens = DefaultTokens
	}
	return o
}
