package cluster

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
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

// maxDepth bounds the nesting a message may have.
const maxDepth = 8

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

// decode checks that every length in b fits in b before letting msgpack
// allocate anything, then decodes into v.
func decode(b []byte, v any) error {
	if err := checkMsgpack(b); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrMalformed, v, err)
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrMalformed, v, err)
	}
	return nil
}

// checkMsgpack walks one msgpack value and checks that every string, binary
// and extension length fits in the remaining bytes and that every array or map
// count could be backed by the remaining bytes (one byte per element at
// least), so that decoding a hostile header cannot size a large allocation.
func checkMsgpack(b []byte) error {
	rest, err := walk(b, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes", len(rest))
	}
	return nil
}

func walk(b []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("nested too deeply")
	}
	if len(b) == 0 {
		return nil, errors.New("truncated")
	}
	c := b[0]
	b = b[1:]
	uint := func(n int) (int, []byte, error) {
		if len(b) < n {
			return 0, nil, errors.New("truncated length")
		}
		v := 0
		for i := 0; i < n; i++ {
			v = v<<8 | int(b[i])
		}
		if v < 0 {
			return 0, nil, errors.New("length overflows")
		}
		return v, b[n:], nil
	}
	skip := func(n int, rest []byte) ([]byte, error) {
		if n > len(rest) {
			return nil, fmt.Errorf("length %d exceeds the %d bytes left", n, len(rest))
		}
		return rest[n:], nil
	}
	items := func(n int, rest []byte, per int) ([]byte, error) {
		if n > len(rest) {
			return nil, fmt.Errorf("count %d exceeds the %d bytes left", n, len(rest))
		}
		var err error
		for i := 0; i < n*per; i++ {
			if rest, err = walk(rest, depth+1); err != nil {
				return nil, err
			}
		}
		return rest, nil
	}
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return b, nil
	case c >= 0x80 && c <= 0x8f:
		return items(int(c&0x0f), b, 2)
	case c >= 0x90 && c <= 0x9f:
		return items(int(c&0x0f), b, 1)
	case c >= 0xa0 && c <= 0xbf:
		return skip(int(c&0x1f), b)
	}
	switch c {
	case 0xcc, 0xd0:
		return skip(1, b)
	case 0xcd, 0xd1:
		return skip(2, b)
	case 0xca, 0xce, 0xd2:
		return skip(4, b)
	case 0xcb, 0xcf, 0xd3:
		return skip(8, b)
	case 0xd4:
		return skip(2, b)
	case 0xd5:
		return skip(3, b)
	case 0xd6:
		return skip(5, b)
	case 0xd7:
		return skip(9, b)
	case 0xd8:
		return skip(17, b)
	case 0xc4, 0xd9: // bin8, str8
		n, rest, err := uint(1)
		if err != nil {
			return nil, err
		}
		return skip(n, rest)
	case 0xc5, 0xda:
		n, rest, err := uint(2)
		if err != nil {
			return nil, err
		}
		return skip(n, rest)
	case 0xc6, 0xdb:
		n, rest, err := uint(4)
		if err != nil {
			return nil, err
		}
		return skip(n, rest)
	case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, type byte, data
		w := map[byte]int{0xc7: 1, 0xc8: 2, 0xc9: 4}[c]
		n, rest, err := uint(w)
		if err != nil {
			return nil, err
		}
		return skip(n+1, rest)
	case 0xdc:
		n, rest, err := uint(2)
		if err != nil {
			return nil, err
		}
		return items(n, rest, 1)
	case 0xdd:
		n, rest, err := uint(4)
		if err != nil {
			return nil, err
		}
		return items(n, rest, 1)
	case 0xde:
		n, rest, err := uint(2)
		if err != nil {
			return nil, err
		}
		return items(n, rest, 2)
	case 0xdf:
		n, rest, err := uint(4)
		if err != nil {
			return nil, err
		}
		return items(n, rest, 2)
	}
	return nil, fmt.Errorf("unknown type byte 0x%02x", c)
}
