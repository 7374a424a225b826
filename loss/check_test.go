package loss

import (
	"errors"
	"strings"
	"testing"
)

// The refusal of reverse KL against a renormalized top k says how many ids
// get 0 when the vocabulary is known (a call), and does not invent a count
// when it is not (CheckTeacher, before the vocabulary is known).
func TestRenormalizedReverseNamesTheZeros(t *testing.T) {
	const rows, V, k = 2, 64, 8
	mod := func(f func(*Options)) Options { o := DefaultOptions(); f(&o); return o }
	reverse := mod(func(o *Options) { o.TeacherTopK, o.TeacherTail, o.Direction = k, TailRenormalize, Reverse })
	jsd1 := mod(func(o *Options) { o.TeacherTopK, o.TeacherTail, o.Direction, o.Beta = k, TailRenormalize, JSD, 1 })
	call := func(o Options) error {
		_, err := NewComputer(nil).ForwardBackward(make([]float32, rows*V), rows, V, Target{TeacherLogits: make([]float32, rows*V)}, o, 1, nil)
		return err
	}
	for _, tc := range []struct {
		name   string
		err    error
		want   string
		unwant string
	}{
		{"call, reverse", call(reverse), "(it gives 0 to the other 56 ids)", "outside"},
		{"call, jsd beta 1", call(jsd1), "(it gives 0 to the other 56 ids)", "outside"},
		{"CheckTeacher, reverse", reverse.CheckTeacher(), "(it gives 0 to every id outside its top k)", "other"},
		{"CheckTeacher, jsd beta 1", jsd1.CheckTeacher(), "(it gives 0 to every id outside its top k)", "other"},
	} {
		if !errors.Is(tc.err, ErrOption) || !strings.Contains(tc.err.Error(), tc.want) || strings.Contains(tc.err.Error(), tc.unwant) {
			t.Errorf("%s = %v; want %v saying %q", tc.name, tc.err, ErrOption, tc.want)
		}
	}
}
