package loss

import "math"

// CheckTeacher reports whether o can give a finite loss against a teacher
// target (teacher logits, or a top-k store), whatever the data: it refuses
// the rest tail with reverse KL or JSD, and reverse KL against a
// renormalized top k without label smoothing. A trainer calls it when it
// reads its configuration, before any row is computed and before the
// vocabulary is known: every TeacherTopK k > 0 counts as a top k.
func (o Options) CheckTeacher() error {
	if err := o.Validate(); err != nil {
		return err
	}
	_, err := checkFit(kindTeacher, true, 0, unknownVocab, o)
	return err
}

// unknownVocab is checkFit's vocabulary when it is not known yet
// (CheckTeacher): above every top k, and never counted in a message.
const unknownVocab = math.MaxInt32
