package netem_test

import (
	"errors"
	"testing"
	"time"

	"github.com/klring/klring/netem"
)

func TestParseProfile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want netem.LinkProfile
	}{
		{"none", netem.LinkProfile{Name: "none"}},
		{"1gbe", netem.LinkProfile{Name: "1GbE", Bandwidth: 1.25e8 * 0.94, Latency: 200 * time.Microsecond}},
		{"wan", netem.LinkProfile{Name: "wan", Bandwidth: 12.5e6, Latency: 20 * time.Millisecond, Jitter: 2 * time.Millisecond}},
		{"100MB/s:1ms", netem.LinkProfile{Name: "100MB/s:1ms", Bandwidth: 100e6, Latency: time.Millisecond}},
		{"2.5GB/s:0s", netem.LinkProfile{Name: "2.5GB/s:0s", Bandwidth: 2.5e9}},
		{"300kB/s: 20ms", netem.LinkProfile{Name: "300kB/s: 20ms", Bandwidth: 300e3, Latency: 20 * time.Millisecond}},
		{"7B/s:1us", netem.LinkProfile{Name: "7B/s:1us", Bandwidth: 7, Latency: time.Microsecond}},
	} {
		got, err := netem.ParseProfile(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseProfile(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("ParseProfile(%q).Validate() = %v", tc.in, err)
		}
	}
	for _, in := range []string{"", "fast", "100MB/s", "100Mb/s:1ms", "-1MB/s:1ms", "0MB/s:1ms", "xMB/s:1ms", "1MB/s:-1ms", "1MB/s:soon", "InfMB/s:1ms"} {
		if p, err := netem.ParseProfile(in); !errors.Is(err, netem.ErrBadProfile) {
			t.Errorf("ParseProfile(%q) = %+v, %v; want %v", in, p, err, netem.ErrBadProfile)
		}
	}
}

func TestProfileValidate(t *testing.T) {
	for _, p := range netem.Profiles() {
		if err := p.Validate(); err != nil {
			t.Errorf("%s.Validate() = %v", p.Name, err)
		}
		if p.Shaped() != (p.Name != "none") {
			t.Errorf("%s.Shaped() = %v", p.Name, p.Shaped())
		}
	}
	for _, p := range []netem.LinkProfile{{Bandwidth: -1}, {Latency: -1}, {Jitter: -1}, {Loss: -0.1}, {Loss: 1.1}} {
		if err := p.Validate(); !errors.Is(err, netem.ErrBadProfile) {
			t.Errorf("%+v.Validate() = %v; want %v", p, err, netem.ErrBadProfile)
		}
	}
}

// TestShaperSchedule checks the model's arithmetic with a clock handed in:
// messages wait for the wire, take their size over the bandwidth, arrive a
// latency later, and links are independent.
func TestShaperSchedule(t *testing.T) {
	p := netem.LinkProfile{Bandwidth: 1e6, Latency: 5 * time.Millisecond} // 1 byte per µs
	s := netem.NewShaper(p, 1)
	t0 := time.Unix(1000, 0)
	size := 1000 - netem.FrameOverhead // 1 ms on the wire
	for i, tc := range []struct {
		from, to string
		now      time.Duration // after t0
		want     time.Duration
	}{
		{"a", "b", 0, 6 * time.Millisecond},                      // 1 ms wire + 5 ms
		{"a", "b", 0, 7 * time.Millisecond},                      // waits for the wire
		{"a", "b", 500 * time.Microsecond, 8 * time.Millisecond}, // still waits
		{"a", "c", 0, 6 * time.Millisecond},                      // another link
		{"b", "a", 0, 6 * time.Millisecond},                      // the other direction
		{"a", "b", 10 * time.Millisecond, 16 * time.Millisecond}, // the wire was free
	} {
		at, lost := s.Schedule(tc.from, tc.to, size, t0.Add(tc.now))
		if lost || at.Sub(t0) != tc.want {
			t.Errorf("message %d %s->%s at +%v: arrives +%v, lost %v; want +%v", i, tc.from, tc.to, tc.now, at.Sub(t0), lost, tc.want)
		}
	}
}

// TestShaperJitterKeepsOrder checks that jitter never reorders a link and
// stays within its bound, and that the same seed draws the same schedule.
func TestShaperJitterKeepsOrder(t *testing.T) {
	p := netem.LinkProfile{Latency: time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 0.2}
	t0 := time.Unix(0, 0)
	schedule := func(seed uint64) []time.Duration {
		s := netem.NewShaper(p, seed)
		var out []time.Duration
		for i := range 1000 {
			now := t0.Add(time.Duration(i) * 100 * time.Microsecond)
			at, lost := s.Schedule("a", "b", 100, now)
			if lost {
				out = append(out, -1)
				continue
			}
			if d := at.Sub(now); d < p.Latency {
				t.Fatalf("message %d arrives %v after it was sent; want >= %v", i, d, p.Latency)
			}
			out = append(out, at.Sub(t0))
		}
		return out
	}
	a, b, c := schedule(7), schedule(7), schedule(8)
	last, lost, differ := time.Duration(0), 0, false
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 7: message %d at %v, then %v; want the same schedule", i, a[i], b[i])
		}
		differ = differ || a[i] != c[i]
		if a[i] < 0 {
			lost++
			continue
		}
		if a[i] < last {
			t.Fatalf("message %d arrives at %v, before the one sent before it (%v)", i, a[i], last)
		}
		last = a[i]
	}
	if lost < 100 || lost > 300 || !differ {
		t.Errorf("%d of 1000 lost at loss 0.2, seeds 7 and 8 differ: %v; want about 200 and true", lost, differ)
	}
}
