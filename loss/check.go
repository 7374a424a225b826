package loss

import "math"

// CheckTeacher reports whether o can give a finite loss against a teacher
// target (teacher logits, or a top-k store), whatever the data: it refuses
// the rest tail with reverse KL or JSD, and reverse KL against a
// renormalized top k without label smoothing. A trainer calls it when it
// reads its configuration, before any row is computed.
func (o Options) CheckTeacher() error {
	if err := o.Validate(); err != nil {
		return err
	}
	_, err := checkFit(kindTeacher, true, 0, math.MaxInt32, o)
	return err
}
