package netem

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// ErrBadProfile is the error of a link profile that cannot be used.
var ErrBadProfile = errors.New("netem: invalid link profile")

// LinkProfile models one network link between two workers: every message
// waits for the link to be free, takes its size (payload plus FrameOverhead)
// over Bandwidth on the wire, and arrives Latency (plus up to Jitter) later.
// Messages on one link keep their order. Loss drops that fraction of
// messages (an all-reduce then fails by its deadline and is retried, as on a
// real lossy network).
type LinkProfile struct {
	Name      string
	Bandwidth float64       // bytes per second; 0: unlimited
	Latency   time.Duration // one way
	Jitter    time.Duration // uniform in [0, Jitter)
	Loss      float64       // fraction of messages lost, in [0, 1]
}

// FrameOverhead is what a message costs on the wire beyond its payload:
// subject, attempt header and protocol framing.
const FrameOverhead = 96

// Profiles are the named link profiles.
func Profiles() []LinkProfile {
	return []LinkProfile{
		{Name: "none"},
		{Name: "10GbE", Bandwidth: 1.25e9 * 0.94, Latency: 50 * time.Microsecond},
		{Name: "1GbE", Bandwidth: 1.25e8 * 0.94, Latency: 200 * time.Microsecond},
		{Name: "100MBps", Bandwidth: 100e6, Latency: time.Millisecond},
		{Name: "wan", Bandwidth: 12.5e6, Latency: 20 * time.Millisecond, Jitter: 2 * time.Millisecond},
	}
}

// ParseProfile finds a named profile (case-insensitive), or parses
// "BANDWIDTH:LATENCY" such as "100MB/s:1ms" (bandwidth in B/s, kB/s, MB/s or
// GB/s; decimal units).
func ParseProfile(s string) (LinkProfile, error) {
	for _, p := range Profiles() {
		if strings.EqualFold(p.Name, s) {
			return p, nil
		}
	}
	bw, lat, ok := strings.Cut(s, ":")
	if !ok {
		return LinkProfile{}, fmt.Errorf("%w: %q: want one of none, 10GbE, 1GbE, 100MBps, wan, or BANDWIDTH:LATENCY such as 100MB/s:1ms", ErrBadProfile, s)
	}
	b, err := parseBandwidth(bw)
	if err != nil {
		return LinkProfile{}, fmt.Errorf("%w: %q: %w", ErrBadProfile, s, err)
	}
	l, err := time.ParseDuration(strings.TrimSpace(lat))
	if err != nil || l < 0 {
		return LinkProfile{}, fmt.Errorf("%w: %q: latency %q: want a duration such as 1ms", ErrBadProfile, s, lat)
	}
	return LinkProfile{Name: s, Bandwidth: b, Latency: l}, nil
}

func parseBandwidth(s string) (float64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suf string
		mul float64
	}{{"GB/s", 1e9}, {"MB/s", 1e6}, {"kB/s", 1e3}, {"KB/s", 1e3}, {"B/s", 1}}
	for _, u := range units {
		if strings.HasSuffix(s, u.suf) {
			var v float64
			if _, err := fmt.Sscanf(strings.TrimSuffix(s, u.suf), "%g", &v); err != nil || !(v > 0) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("bandwidth %q: want a positive number with B/s, kB/s, MB/s or GB/s", s)
			}
			return v * u.mul, nil
		}
	}
	return 0, fmt.Errorf("bandwidth %q: want a unit of B/s, kB/s, MB/s or GB/s", s)
}

// Validate checks every field and names the one that is wrong.
func (p LinkProfile) Validate() error {
	switch {
	case !(p.Bandwidth >= 0) || math.IsInf(p.Bandwidth, 0):
		return fmt.Errorf("%w: %s: Bandwidth = %g, want >= 0 (0: unlimited)", ErrBadProfile, p.Name, p.Bandwidth)
	case p.Latency < 0:
		return fmt.Errorf("%w: %s: Latency = %v, want >= 0", ErrBadProfile, p.Name, p.Latency)
	case p.Jitter < 0:
		return fmt.Errorf("%w: %s: Jitter = %v, want >= 0", ErrBadProfile, p.Name, p.Jitter)
	case !(p.Loss >= 0 && p.Loss <= 1):
		return fmt.Errorf("%w: %s: Loss = %g, want [0, 1]", ErrBadProfile, p.Name, p.Loss)
	}
	return nil
}

// Shaped reports whether the profile changes anything.
func (p LinkProfile) Shaped() bool {
	return p.Bandwidth > 0 || p.Latency > 0 || p.Jitter > 0 || p.Loss > 0
}

// Shaper schedules messages on links (from, to) under one profile: the pure
// model, with the clock handed in. Its random draws (loss, jitter) come from
// a generator seeded by NewShaper, so the same calls give the same schedule.
// It is safe for concurrent use.
type Shaper struct {
	p     LinkProfile
	mu    sync.Mutex
	links map[[2]string]*link
	rng   *rand.Rand
}

type link struct {
	free    time.Time // when the wire is free again
	arrival time.Time // arrival of the last message: arrivals never reorder
}

// NewShaper returns a shaper of p whose draws come from seed.
func NewShaper(p LinkProfile, seed uint64) *Shaper {
	return &Shaper{p: p, links: map[[2]string]*link{}, rng: rand.New(rand.NewPCG(seed, 0x6b6c72696e67))}
}

// Profile is the shaper's profile.
func (s *Shaper) Profile() LinkProfile { return s.p }

// Schedule returns when a message of size payload bytes sent at now on the
// link from -> to arrives, and whether it is lost instead. Lost messages do
// not occupy the link.
func (s *Shaper) Schedule(from, to string, size int, now time.Time) (at time.Time, lost bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p.Loss > 0 && s.rng.Float64() < s.p.Loss {
		return time.Time{}, true
	}
	l := s.links[[2]string{from, to}]
	if l == nil {
		l = &link{}
		s.links[[2]string{from, to}] = l
	}
	start := now
	if l.free.After(start) {
		start = l.free
	}
	wire := time.Duration(0)
	if s.p.Bandwidth > 0 {
		wire = time.Duration(float64(size+FrameOverhead) / s.p.Bandwidth * float64(time.Second))
	}
	l.free = start.Add(wire)
	at = l.free.Add(s.p.Latency)
	if s.p.Jitter > 0 {
		at = at.Add(time.Duration(s.rng.Int64N(int64(s.p.Jitter))))
	}
	if at.Before(l.arrival) {
		at = l.arrival
	}
	l.arrival = at
	return at, false
}

// seedFor mixes a seed with a worker name, so that every worker's shaper
// draws its own sequence.
func seedFor(seed uint64, worker string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(worker))
	return seed ^ h.Sum64()
}
