package protocol

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// The control messages of the step protocol whose fields the state machines
// read (docs/protocol.md). The runtime encodes and decodes them (msgpack, with
// the field names of the tags) and checks Validate before it hands one to a
// state machine, so the machines see only messages within these bounds. Every
// message names the run (one coordinator incarnation) and its sender; those
// of an attempt also name the membership epoch and the step.

// Bounds of the wire. They are generous for what klring runs and small
// enough that no message can make a receiver allocate or loop without limit.
const (
	MaxNameLen = 64      // worker names and run ids, in bytes
	MaxMembers = 1024    // workers in one epoch
	MaxBatch   = 1 << 20 // windows in one global batch
	MaxErrLen  = 4096    // bytes of an error text
	// MaxServerLen bounds the name of a NATS server a worker reports (a
	// nats-server's default name is its 56-byte ID).
	MaxServerLen = 128
)

// ErrInvalid is wrapped by every Validate error.
var ErrInvalid = errors.New("protocol: invalid message")

// Hello is a worker's request to join; the coordinator answers it with the
// job's description (the runtime's welcome). Server is the name of the NATS
// server the worker is connected to, as that server's INFO gives it ("":
// unknown); the coordinator places the ring with it (Place).
type Hello struct {
	Worker string `msgpack:"worker"`
	Server string `msgpack:"server,omitempty"`
}

// Plan starts, retries or ends a step. Step Step is computed from the
// parameters of committed step Base (= Step-1). CommitEpoch, when not 0,
// says that step Base was committed as computed in that epoch: a worker that
// holds the update of exactly (CommitEpoch, Base) applies it first; any other
// pending update is discarded. Final commits Base and ends the job; Pause
// commits Base and says the coordinator stops and may come back (workers
// wait for it). A plan with no members and step 0 only announces the run.
// Checkpoint, on a plan that commits Base, says the coordinator checkpoints
// step Base: the workers of its committed ring send it what of their state
// a checkpoint keeps (their error-feedback residual).
type Plan struct {
	Run         string   `msgpack:"run"`
	Epoch       uint64   `msgpack:"epoch"`
	Step        uint64   `msgpack:"step"`
	Base        uint64   `msgpack:"base"`
	CommitEpoch uint64   `msgpack:"commit_epoch,omitempty"`
	Members     []string `msgpack:"members"` // ring order; rank = index
	Batch       []int32  `msgpack:"batch"`   // window ids of the global batch
	LR          float32  `msgpack:"lr"`
	Resync      []string `msgpack:"resync,omitempty"` // members that must load the snapshot of Base first
	Final       bool     `msgpack:"final,omitempty"`
	Pause       bool     `msgpack:"pause,omitempty"`
	Checkpoint  bool     `msgpack:"checkpoint,omitempty"`
}

// Done is a worker's report of its part of an attempt.
type Done struct {
	Run      string  `msgpack:"run"`
	Epoch    uint64  `msgpack:"epoch"`
	Step     uint64  `msgpack:"step"`
	Sender   string  `msgpack:"sender"`
	Rank     int     `msgpack:"rank"`
	Windows  []int32 `msgpack:"windows"`
	Tokens   int64   `msgpack:"tokens"`
	LossSum  float64 `msgpack:"loss_sum"`           // this rank's loss sum (before the reduction)
	CESum    float64 `msgpack:"ce_sum"`             // cross-entropy of the actual next tokens, summed
	KDSum    float64 `msgpack:"kd_sum,omitempty"`   // the divergence part of the loss, summed
	KeptSum  float64 `msgpack:"kept_sum,omitempty"` // the teacher's mass kept by its top k, summed
	Checksum uint64  `msgpack:"checksum"`           // of the parameters the gradient was computed from (step Base)
	SegSum   uint64  `msgpack:"seg_sum"`            // of the segment this rank owns, fully reduced
	// Timings: compute in wall and thread-CPU seconds, the all-reduce, and
	// the wall-clock times (Unix ns) the rank entered and left the ring.
	// With the ring overlapping backward the rank "enters" when its
	// computation ends: the all-reduce is the part not hidden behind it.
	ComputeS    float64 `msgpack:"compute_s"`
	ComputeCPUS float64 `msgpack:"compute_cpu_s"`
	AllReduceS  float64 `msgpack:"allreduce_s"`
	ARStart     int64   `msgpack:"ar_start"`
	AREnd       int64   `msgpack:"ar_end"`
	// Err says the attempt failed on this worker; ErrKind classifies it
	// (one of the Fail* constants).
	Err     string `msgpack:"err,omitempty"`
	ErrKind string `msgpack:"err_kind,omitempty"`
	Leaving bool   `msgpack:"leaving,omitempty"`
}

// Kinds of a worker's failure (Done.ErrKind).
const (
	FailCompute   = "compute"   // the gradient could not be computed
	FailNonFinite = "nonfinite" // the loss or the gradient is not finite
	FailAllReduce = "allreduce" // the ring did not finish
	FailSnapshot  = "snapshot"  // the snapshot of the base step could not be loaded
)

// Segment carries part of a rank's fully reduced segment of the gradient
// vector to the coordinator: Data holds len(Data)/4 little-endian float32s
// that belong at float Offset.
type Segment struct {
	Run    string `msgpack:"run"`
	Epoch  uint64 `msgpack:"epoch"`
	Step   uint64 `msgpack:"step"`
	Sender string `msgpack:"sender"`
	Offset int64  `msgpack:"offset"`
	Data   []byte `msgpack:"data"`
}

// Heartbeat says a worker is alive; Step is its committed step. Server is
// the NATS server it is connected to now, as in Hello: a worker that
// reconnected to another server says so in its next heartbeat.
type Heartbeat struct {
	Run     string `msgpack:"run"`
	Sender  string `msgpack:"sender"`
	Step    uint64 `msgpack:"step"`
	Leaving bool   `msgpack:"leaving,omitempty"` // the worker leaves at this step boundary
	Server  string `msgpack:"server,omitempty"`
}

// SnapRequest asks for bytes [Offset, Offset+Max) of the snapshot of
// committed step Step.
type SnapRequest struct {
	Run    string `msgpack:"run"`
	Sender string `msgpack:"sender"`
	Step   uint64 `msgpack:"step"`
	Offset int64  `msgpack:"offset"`
	Max    int64  `msgpack:"max"`
}

// ValidName reports whether s can name a worker (or a job): 1 to MaxNameLen
// bytes of [A-Za-z0-9_-], since it becomes a NATS subject token.
func ValidName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("%w: name of %d bytes, want 1 to %d", ErrInvalid, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: name %q: byte %d is not one of [A-Za-z0-9_-]", ErrInvalid, s, i)
		}
	}
	return nil
}

func validRun(run string) error {
	if len(run) > MaxNameLen {
		return fmt.Errorf("%w: run id of %d bytes, at most %d", ErrInvalid, len(run), MaxNameLen)
	}
	return nil
}

// validServer reports whether s can be a server name in a hello or a
// heartbeat: empty (unknown), or at most MaxServerLen bytes of printable
// ASCII without spaces.
func validServer(s string) error {
	if len(s) > MaxServerLen {
		return fmt.Errorf("%w: server name of %d bytes, at most %d", ErrInvalid, len(s), MaxServerLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' {
			return fmt.Errorf("%w: server name %q: byte %d is not printable ASCII", ErrInvalid, s, i)
		}
	}
	return nil
}

// Validate checks the bounds of a hello.
func (h *Hello) Validate() error {
	if err := ValidName(h.Worker); err != nil {
		return err
	}
	return validServer(h.Server)
}

// Validate checks the bounds of a plan: names, sizes, no duplicate member,
// window ids >= 0, a finite learning rate, Base = Step-1 for a step's plan.
func (p *Plan) Validate() error {
	if err := validRun(p.Run); err != nil {
		return err
	}
	switch {
	case len(p.Members) > MaxMembers:
		return fmt.Errorf("%w: plan with %d members, at most %d", ErrInvalid, len(p.Members), MaxMembers)
	case len(p.Batch) > MaxBatch:
		return fmt.Errorf("%w: plan with %d windows, at most %d", ErrInvalid, len(p.Batch), MaxBatch)
	case len(p.Resync) > len(p.Members):
		return fmt.Errorf("%w: plan resyncs %d of %d members", ErrInvalid, len(p.Resync), len(p.Members))
	case math.IsNaN(float64(p.LR)) || math.IsInf(float64(p.LR), 0) || p.LR < 0:
		return fmt.Errorf("%w: plan learning rate %v", ErrInvalid, p.LR)
	case p.Step > 0 && p.Base != p.Step-1:
		return fmt.Errorf("%w: plan of step %d from base %d", ErrInvalid, p.Step, p.Base)
	case p.Final && p.Pause:
		return fmt.Errorf("%w: plan both final and pause", ErrInvalid)
	}
	seen := make(map[string]bool, len(p.Members))
	for _, m := range p.Members {
		if err := ValidName(m); err != nil {
			return fmt.Errorf("plan member: %w", err)
		}
		if seen[m] {
			return fmt.Errorf("%w: plan lists member %q twice", ErrInvalid, m)
		}
		seen[m] = true
	}
	for _, r := range p.Resync {
		if !seen[r] {
			return fmt.Errorf("%w: plan resyncs %q, not a member", ErrInvalid, r)
		}
	}
	for i, w := range p.Batch {
		if w < 0 {
			return fmt.Errorf("%w: plan window %d at %d is negative", ErrInvalid, w, i)
		}
	}
	if len(p.Members) > 0 && len(p.Batch) == 0 && !p.Final && !p.Pause {
		return fmt.Errorf("%w: plan of step %d with members and no windows", ErrInvalid, p.Step)
	}
	return nil
}

// Validate checks the bounds of a done.
func (d *Done) Validate() error {
	if err := validRun(d.Run); err != nil {
		return err
	}
	if err := ValidName(d.Sender); err != nil {
		return fmt.Errorf("done sender: %w", err)
	}
	switch {
	case d.Rank < 0 || d.Rank >= MaxMembers:
		return fmt.Errorf("%w: done rank %d", ErrInvalid, d.Rank)
	case len(d.Windows) > MaxBatch:
		return fmt.Errorf("%w: done with %d windows", ErrInvalid, len(d.Windows))
	case d.Tokens < 0:
		return fmt.Errorf("%w: done with %d tokens", ErrInvalid, d.Tokens)
	case len(d.Err) > MaxErrLen:
		return fmt.Errorf("%w: done error of %d bytes", ErrInvalid, len(d.Err))
	}
	return nil
}

// Validate checks the bounds of a segment: a valid sender, Offset >= 0 and
// whole float32s. Whether it fits the vector is the coordinator's check.
func (s *Segment) Validate() error {
	if err := validRun(s.Run); err != nil {
		return err
	}
	if err := ValidName(s.Sender); err != nil {
		return fmt.Errorf("segment sender: %w", err)
	}
	switch {
	case s.Offset < 0:
		return fmt.Errorf("%w: segment offset %d", ErrInvalid, s.Offset)
	case len(s.Data) == 0 || len(s.Data)%4 != 0:
		return fmt.Errorf("%w: segment of %d bytes, want a positive multiple of 4", ErrInvalid, len(s.Data))
	}
	return nil
}

// Validate checks the bounds of a heartbeat.
func (h *Heartbeat) Validate() error {
	if err := validRun(h.Run); err != nil {
		return err
	}
	if err := ValidName(h.Sender); err != nil {
		return err
	}
	return validServer(h.Server)
}

// Validate checks the bounds of a snapshot request.
func (r *SnapRequest) Validate() error {
	if err := validRun(r.Run); err != nil {
		return err
	}
	if err := ValidName(r.Sender); err != nil {
		return err
	}
	if r.Offset < 0 || r.Max < 0 {
		return fmt.Errorf("%w: snapshot request at %d for %d bytes", ErrInvalid, r.Offset, r.Max)
	}
	return nil
}

// Rank returns w's rank in p, or -1.
func (p *Plan) Rank(w string) int { return slices.Index(p.Members, w) }
