package cluster

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/klring/klring/msgcheck"
	"github.com/klring/klring/protocol"
)

// The messages of the step protocol that the state machines read are in
// package protocol (Hello, Plan, Done, Segment, Heartbeat, SnapRequest);
// those that carry the job's data are here. Every message is a msgpack
// map; docs/protocol.md lists them all.

// welcome answers a hello: the run to follow and what the job is. Seed, when
// not nil, says the coordinator resumed from a checkpoint that holds the
// workers' error-feedback residuals: a worker that loads the snapshot of
// that step asks for its seed (seedRequest).
type welcome struct {
	Run  string    `msgpack:"run"`
	Spec JobSpec   `msgpack:"spec"`
	Seed *seedInfo `msgpack:"seed,omitempty"`
	Err  string    `msgpack:"err,omitempty"`
}

// seedInfo names the residuals a resumed coordinator serves: those of
// committed step Step, saved by a ring of World ranks.
type seedInfo struct {
	Step  uint64 `msgpack:"step"`
	World int    `msgpack:"world"`
}

// snapChunk answers a snapshot request. The snapshot is the parameters followed by
// the optimizer state, as raw little-endian float32 bytes.
type snapChunk struct {
	Run      string `msgpack:"run"`
	Step     uint64 `msgpack:"step"`
	Total    int    `msgpack:"total"` // bytes in the whole snapshot
	Offset   int    `msgpack:"offset"`
	Data     []byte `msgpack:"data"`
	OptStep  int    `msgpack:"opt_step"`
	Checksum uint64 `msgpack:"checksum"` // of the parameters
	Err      string `msgpack:"err,omitempty"`
}

// residPart carries part of a worker's error-feedback residual to the
// coordinator, which checkpoints committed step Step (protocol.Plan.Checkpoint):
// the residual the worker committed with attempt (Epoch, Step), computed as
// rank Rank of a ring of World ranks. Data holds len(Data)/4 little-endian
// float32s that belong at float Offset of a residual of Total floats (the
// gradient vector's length). A worker sends the parts in order.
type residPart struct {
	Run    string `msgpack:"run"`
	Epoch  uint64 `msgpack:"epoch"`
	Step   uint64 `msgpack:"step"`
	Sender string `msgpack:"sender"`
	Rank   int    `msgpack:"rank"`
	World  int    `msgpack:"world"`
	Total  int64  `msgpack:"total"`
	Offset int64  `msgpack:"offset"`
	Data   []byte `msgpack:"data"`
}

// Validate checks a residual part's bounds, overflow-safe: a run id and a
// sender's name, 0 <= Rank < World <= protocol.MaxMembers, whole floats that
// lie within [0, Total). Whether Total is the vector's length, and the ring
// the one that committed Step, is the coordinator's check.
func (p *residPart) Validate() error {
	if err := validRankOf("residual", p.Run, p.Sender, p.Rank, p.World); err != nil {
		return err
	}
	n := int64(len(p.Data) / 4)
	switch {
	case len(p.Data) == 0 || len(p.Data)%4 != 0:
		return fmt.Errorf("residual part of %d bytes, want a positive multiple of 4", len(p.Data))
	case p.Total < 1 || p.Offset < 0 || p.Offset > p.Total-n:
		return fmt.Errorf("residual floats [%d, +%d) outside [0, %d)", p.Offset, n, p.Total)
	}
	return nil
}

// seedRequest asks for floats [Offset, Offset+Max) of the error-feedback
// seed of rank Rank of a ring of World ranks whose attempt starts from
// committed step Step, the step of the checkpoint the coordinator resumed
// from (welcome.Seed).
type seedRequest struct {
	Run    string `msgpack:"run"`
	Sender string `msgpack:"sender"`
	Step   uint64 `msgpack:"step"`
	Rank   int    `msgpack:"rank"`
	World  int    `msgpack:"world"`
	Offset int64  `msgpack:"offset"`
	Max    int64  `msgpack:"max"`
}

// Validate checks a seed request's bounds.
func (r *seedRequest) Validate() error {
	if err := validRankOf("seed request", r.Run, r.Sender, r.Rank, r.World); err != nil {
		return err
	}
	if r.Offset < 0 || r.Max < 1 {
		return fmt.Errorf("seed request at %d for %d floats", r.Offset, r.Max)
	}
	return nil
}

// validRankOf checks what a residual message says of its run, its sender
// and the rank it is about; what names the message in errors.
func validRankOf(what, run, sender string, rank, world int) error {
	if len(run) > protocol.MaxNameLen {
		return fmt.Errorf("%s: run id of %d bytes", what, len(run))
	}
	if err := protocol.ValidName(sender); err != nil {
		return fmt.Errorf("%s sender: %w", what, err)
	}
	if world < 1 || world > protocol.MaxMembers || rank < 0 || rank >= world {
		return fmt.Errorf("%s of rank %d of %d", what, rank, world)
	}
	return nil
}

// seedChunk answers a seed request: floats [Offset, Offset+len(Data)/4) of
// a seed of Total floats, or Zero when the seed of that rank is zero.
type seedChunk struct {
	Run    string `msgpack:"run"`
	Step   uint64 `msgpack:"step"`
	Total  int64  `msgpack:"total"`
	Offset int64  `msgpack:"offset"`
	Data   []byte `msgpack:"data"`
	Zero   bool   `msgpack:"zero,omitempty"`
	Err    string `msgpack:"err,omitempty"`
}

// Errors of the wire format.
var (
	ErrMalformed = errors.New("cluster: malformed message")
)

func encode(v any) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cluster: encoding %T: %w", v, err)
	}
	return b, nil
}

// validator is a message with bounds to check after decoding.
type validator interface{ Validate() error }

// decodeValid decodes b into v and checks v's bounds.
func decodeValid(b []byte, v validator) error {
	if err := decode(b, v); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrMalformed, v, err)
	}
	return nil
}

// decode checks that every length in b fits in b (msgcheck.Check) before
// letting msgpack allocate anything, then decodes into v.
func decode(b []byte, v any) error {
	if err := msgcheck.Check(b); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrMalformed, v, err)
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrMalformed, v, err)
	}
	return nil
}
