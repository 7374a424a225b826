package cluster

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/klring/klring/msgcheck"
)

// The messages of the step protocol that the state machines read are in
// package protocol (Hello, Plan, Done, Segment, Heartbeat, SnapRequest);
// the two that carry the job's data are here. Every message is a msgpack
// map; docs/protocol.md lists them all.

// welcome answers a hello: the run to follow and what the job is.
type welcome struct {
	Run  string  `msgpack:"run"`
	Spec JobSpec `msgpack:"spec"`
	Err  string  `msgpack:"err,omitempty"`
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
