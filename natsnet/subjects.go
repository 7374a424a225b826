package natsnet

import (
	"errors"
	"fmt"
)

// ErrBadName is the error of a job or worker name that cannot be a NATS
// subject token.
var ErrBadName = errors.New("natsnet: invalid name")

// MaxNameLen is the longest job or worker name, in bytes.
const MaxNameLen = 64

// ValidName reports whether name may name a job or a worker: it becomes one
// token of NATS subjects, so it is 1 to MaxNameLen bytes of [A-Za-z0-9_-]
// (no dot, wildcard or space, which NATS itself would accept or misread).
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %q is %d bytes long, at most %d", ErrBadName, name, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q has %q at byte %d (want [A-Za-z0-9_-]{1,%d}, it becomes a NATS subject token)", ErrBadName, name, c, i, MaxNameLen)
		}
	}
	return nil
}

// Subjects are every NATS subject of one job, all under klring.<job>: the
// one place they are spelled. docs/protocol.md says who publishes what on
// each.
type Subjects struct {
	Job   string
	Hello string // klring.<job>.hello: a worker asks the coordinator to join (request)
	Plan  string // klring.<job>.plan: the coordinator's plans, to every worker
	Done  string // klring.<job>.done: a worker's report of a step
	Seg   string // klring.<job>.seg: a segment owner's reduced segment, to the coordinator
	HB    string // klring.<job>.hb: workers' heartbeats
	Snap  string // klring.<job>.snap: a worker asks for a snapshot chunk (request)
	Resid string // klring.<job>.resid: a worker's error-feedback residual of a checkpointed step, to the coordinator
	Seed  string // klring.<job>.seed: a worker asks for a chunk of its error-feedback seed after a resume (request)
	Coord string // klring.<job>.coord: a coordinator that starts asks whether another serves the job (request)
	All   string // klring.<job>.>: every subject of the job (for permissions)
	Rings string // klring.<job>.ring.*: every worker's ring subject (for permissions)
	ring  string // klring.<job>.ring.
}

// NewSubjects returns the subjects of job, or an error wrapping ErrBadName if
// job is not a valid name.
func NewSubjects(job string) (Subjects, error) {
	if err := ValidName(job); err != nil {
		return Subjects{}, fmt.Errorf("job name: %w", err)
	}
	p := "klring." + job + "."
	return Subjects{Job: job, Hello: p + "hello", Plan: p + "plan", Done: p + "done", Seg: p + "seg", HB: p + "hb", Snap: p + "snap",
		Resid: p + "resid", Seed: p + "seed", Coord: p + "coord", All: p + ">", Rings: p + "ring.*", ring: p + "ring."}, nil
}

// Ring is worker's ring subject, klring.<job>.ring.<worker>, on which its
// Mailbox listens; it fails with ErrBadName if worker is not a valid name.
func (s Subjects) Ring(worker string) (string, error) {
	if err := ValidName(worker); err != nil {
		return "", fmt.Errorf("worker name: %w", err)
	}
	if s.ring == "" {
		return "", fmt.Errorf("%w: Subjects not made by NewSubjects", ErrBadName)
	}
	return s.ring + worker, nil
}
