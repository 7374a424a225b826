package loss

import (
	"errors"
	"testing"
)

func TestTextRoundTrip(t *testing.T) {
	for _, d := range []Direction{Forward, Reverse, JSD} {
		b, _ := d.MarshalText()
		var got Direction
		if err := got.UnmarshalText(b); err != nil || got != d {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, got, err, d)
		}
	}
	for _, tl := range []Tail{TailUniform, TailRenormalize, TailRest} {
		b, _ := tl.MarshalText()
		var got Tail
		if err := got.UnmarshalText(b); err != nil || got != tl {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, got, err, tl)
		}
	}
	var d Direction
	if err := d.UnmarshalText([]byte("sideways")); !errors.Is(err, ErrOption) {
		t.Errorf("UnmarshalText(sideways) = %v; want ErrOption", err)
	}
}
