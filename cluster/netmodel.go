package cluster

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// LinkProfile models one network link between two workers: every message
// waits for the link to be free, takes its size over Bandwidth on the wire,
// and arrives Latency (plus up to Jitter) later. Messages on one link keep
// their order. Loss drops that fraction of messages (the step then fails by
// its deadline and is retried, as on a real lossy network).
type LinkProfile struct {
	Name      string
	Bandwidth float64       // bytes per second; 0: unlimited
	Latency   time.Duration // one way
	Jitter    time.Duration
	Loss      float64
}

// Profiles are the named network profiles of simulation mode.
func Profiles() []LinkProfile {
	return []LinkProfile{
		{Name: "none"},
		{Name: "10GbE", Bandwidth: 1.25e9 * 0.94, Latency: 50 * time.Microsecond},
		{Name: "1GbE", Bandwidth: 1.25e8 * 0.94, Latency: 200 * time.Microsecond},
		{Name: "100MBps", Bandwidth: 100e6, Latency: time.Millisecond},
		{Name: "wan", Bandwidth: 12.5e6, Latency: 20 * time.Millisecond, Jitter: 2 * time.Millisecond},
	}
}

// ParseProfile finds a named profile, or parses "BANDWIDTH:LATENCY" such as
// "100MB/s:1ms" (bandwidth in B/s, kB/s, MB/s or GB/s; decimal units).
func ParseProfile(s string) (LinkProfile, error) {
	for _, p := range Profiles() {
		if strings.EqualFold(p.Name, s) {
			return p, nil
		}
	}
	bw, lat, ok := strings.Cut(s, ":")
	if !ok {
		return LinkProfile{}, fmt.Errorf("network profile %q: want one of none, 10GbE, 1GbE, 100MBps, wan, or BANDWIDTH:LATENCY such as 100MB/s:1ms", s)
	}
	b, err := parseBandwidth(bw)
	if err != nil {
		return LinkProfile{}, fmt.Errorf("network profile %q: %w", s, err)
	}
	l, err := time.ParseDuration(strings.TrimSpace(lat))
	if err != nil || l < 0 {
		return LinkProfile{}, fmt.Errorf("network profile %q: latency %q: want a duration such as 1ms", s, lat)
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
			if _, err := fmt.Sscanf(strings.TrimSuffix(s, u.suf), "%g", &v); err != nil || !(v > 0) {
				return 0, fmt.Errorf("bandwidth %q: want a positive number with B/s, kB/s, MB/s or GB/s", s)
			}
			return v * u.mul, nil
		}
	}
	return 0, fmt.Errorf("bandwidth %q: want a unit of B/s, kB/s, MB/s or GB/s", s)
}

// shaped reports whether the profile changes anything.
func (p LinkProfile) shaped() bool {
	return p.Bandwidth > 0 || p.Latency > 0 || p.Jitter > 0 || p.Loss > 0
}

// linkShaper delays messages per (from, to) link according to a profile.
type linkShaper struct {
	p     LinkProfile
	mu    sync.Mutex
	links map[[2]string]*link
	rng   *rand.Rand
}

type link struct {
	free    time.Time // when the wire is free again
	arrival time.Time // arrival of the last message: arrivals never reorder
}

func newLinkShaper(p LinkProfile, seed uint64) *linkShaper {
	return &linkShaper{p: p, links: map[[2]string]*link{}, rng: rand.New(rand.NewPCG(seed, 0x6b6c72696e67))}
}

// schedule returns when a message of size bytes sent now from -> to arrives,
// and whether it is lost.
func (s *linkShaper) schedule(from, to string, size int, now time.Time) (time.Time, bool) {
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
		wire = time.Duration(float64(size) / s.p.Bandwidth * float64(time.Second))
	}
	l.free = start.Add(wire)
	at := l.free.Add(s.p.Latency)
	if s.p.Jitter > 0 {
		at = at.Add(time.Duration(s.rng.Int64N(int64(s.p.Jitter))))
	}
	if at.Before(l.arrival) {
		at = l.arrival
	}
	l.arrival = at
	return at, false
}
