package shard

import (
	"errors"
	"math"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"default synthetic", Options{Ctx: 128}, true},
		{"named synthetic", Options{Source: "synthetic", Ctx: 8, Vocab: 300, Classes: 3, Successors: 5, Tokens: 1000}, true},
		{"text", Options{Source: "text:x.txt", Ctx: 64, ValFraction: 0.1}, true},
		{"tokens", Options{Source: "tokens:x.bin", Ctx: 64, Vocab: 50257}, true},
		{"no ctx", Options{}, false},
		{"huge ctx", Options{Ctx: MaxCtx + 1}, false},
		{"unknown source", Options{Source: "files:x", Ctx: 8}, false},
		{"text without path", Options{Source: "text:", Ctx: 8}, false},
		{"tokens without path", Options{Source: "tokens:", Ctx: 8}, false},
		{"negative val", Options{Ctx: 8, ValFraction: -0.1}, false},
		{"val 1", Options{Ctx: 8, ValFraction: 1}, false},
		{"val NaN", Options{Ctx: 8, ValFraction: math.NaN()}, false},
		{"vocab 1", Options{Ctx: 8, Vocab: 1}, false},
		{"vocab too big", Options{Ctx: 8, Vocab: MaxVocab + 1}, false},
		{"text vocab 300", Options{Source: "text:x", Ctx: 8, Vocab: 300}, false},
		{"classes > vocab", Options{Ctx: 8, Vocab: 4, Classes: 5}, false},
		{"successors > vocab", Options{Ctx: 8, Vocab: 4, Successors: 5}, false},
		{"negative tokens", Options{Ctx: 8, Tokens: -1}, false},
		{"classes on text", Options{Source: "text:x", Ctx: 8, Classes: 2}, false},
		{"tokens on tokens", Options{Source: "tokens:x", Ctx: 8, Tokens: 100}, false},
	}
	for _, tt := range tests {
		err := tt.o.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate(%+v) = %v; want ok %v", tt.name, tt.o, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrOptions) {
			t.Errorf("%s: Validate(%+v) = %v; want an ErrOptions", tt.name, tt.o, err)
		}
		if err != nil {
			if _, oerr := Open(tt.o); !errors.Is(oerr, ErrOptions) {
				t.Errorf("%s: Open(%+v) = %v; want an ErrOptions", tt.name, tt.o, oerr)
			}
		}
	}
}
