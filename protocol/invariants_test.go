package protocol

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The invariants of the design brief, on the state machines: every test here
// replays runs with faults drawn from seeds (workers killed, restarted,
// leaving, cut off, slowed or corrupted; messages lost; the coordinator
// frozen, cut off, crashed and restarted from its checkpoint) and checks its
// invariant at every instant of every run. I1 and I5 are about numbers and
// are tested end to end in cluster/.

const chaosSeeds = 200

// chaosRun plays one run with random faults for its first minute of virtual
// time, then lets it finish. check is called after every instant.
func chaosRun(t *testing.T, seed uint64, check func(h *harness)) *harness {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x6b6c72696e67))
	h := newHarness(t)
	h.ccfg = CoordinatorConfig{Steps: 25, MinWorkers: 1, StartWorkers: 3, Heartbeat: time.Second, StepDeadline: 5 * time.Second,
		MaxAttempts: 1000, MaxNonFinite: 3, EvictAfter: 3, VectorLen: hVector, PartFloats: hPartFloats, SnapBytes: 4096}
	h.batchSize = 7
	h.coordTimeout = 10 * time.Minute
	h.tick = h.ccfg.Heartbeat / 2
	h.quiet = map[string]bool{}
	h.lateWelcome = time.Duration(seed%3) * 3 * time.Millisecond
	// The master's apply: at once, or concurrently with the next step,
	// shorter or longer than a step's compute.
	h.applyDelay = time.Duration(seed%4) * 60 * time.Millisecond
	h.newCoordinator(0)
	names := []string{"w0", "w1", "w2", "w3"}
	for i, n := range names[:3] {
		h.addWorker(n, []string{"a", "b"}[i%2]) // two NATS servers: placement reorders the ring
	}
	h.settle()
	h.check = check
	for h.now.Sub(t0) < time.Minute && h.ended == nil {
		h.advance(time.Duration(rng.IntN(2000)) * time.Millisecond)
		if rng.IntN(3) == 0 {
			h.fault(rng, names)
		}
	}
	// Heal: everything that was killed or left comes back.
	for _, n := range names {
		if w := h.workers[n]; w == nil || w.dead || w.exited && w.exitErr != nil {
			h.addWorker(n, "")
		}
		if w := h.workers[n]; w != nil {
			w.slow, w.behave = 0, "ok"
		}
	}
	h.drops = nil
	if h.cDead || h.ended != nil && h.ended.Err != nil {
		h.newCoordinator(uint64(len(h.master)))
	}
	for i := 0; h.ended == nil && i < 1e6; i++ {
		if !h.stepOnce(h.now.Add(time.Hour)) {
			break
		}
		if h.now.Sub(t0) > time.Hour {
			break
		}
	}
	if h.ended == nil || h.ended.Err != nil {
		t.Errorf("seed %d: the run did not finish: ended=%v committed=%d\n%s", seed, h.ended, h.c.Committed(), tail(h.out, 40))
	}
	return h
}

func tail(l []string, n int) string {
	if len(l) > n {
		l = l[len(l)-n:]
	}
	out := ""
	for _, s := range l {
		out += s + "\n"
	}
	return out
}

// fault injects one random fault.
func (h *harness) fault(rng *rand.Rand, names []string) {
	n := names[rng.IntN(len(names))]
	w := h.workers[n]
	d := time.Duration(rng.IntN(8000)) * time.Millisecond
	switch k := rng.IntN(13); {
	case k == 11 && !h.cDead && h.ended == nil:
		c := h.c
		h.feedC(Disconnected{})
		h.cut["c"] = h.now.Add(d)
		h.at(d, func() {
			if h.c == c && !h.cDead && !c.Ended() {
				h.feedC(Reconnected{})
			}
		})
	case k == 0 && w != nil && !w.dead:
		w.dead = true
		h.trace(n, "killed")
	case k == 1:
		if w != nil {
			w.dead = true
		}
		h.addWorker(n, "")
		h.trace(n, "(re)started")
	case k == 2:
		h.cut[n] = h.now.Add(d)
		h.trace(n, "cut off for %v", d)
	case k == 3:
		kinds := []string{"plan", "done", "seg", "hb", "snap", "hello", "welcome", "snapchunk"}
		h.drops = append(h.drops, dropRule{from: "*", to: "*", kind: kinds[rng.IntN(len(kinds))], count: 1 + rng.IntN(3)})
	case k == 4:
		h.cPause = h.now.Add(d)
		if rng.IntN(2) == 0 {
			h.cut["c"] = h.now.Add(d)
		}
		h.trace("c", "frozen for %v", d)
	case k == 5 && w != nil:
		w.corrupt = true
	case k == 6 && w != nil:
		w.slow = time.Duration(rng.IntN(7000)) * time.Millisecond
	case k == 7 && !h.cDead && h.ended == nil:
		h.cDead = true
		h.trace("c", "crashed")
	case k == 8 && (h.cDead || h.ended != nil && h.ended.Err != nil):
		from := len(h.master)
		if from > 0 && rng.IntN(2) == 0 {
			from = rng.IntN(from + 1) // an older checkpoint
			h.master, h.ledger = h.master[:from], h.ledger[:from]
		}
		h.newCoordinator(uint64(from))
	case k == 9 && w != nil && !w.dead && !w.exited:
		h.feedW(w, Stop{})
	case k == 10 && w != nil:
		w.behave = []string{"ok", "fail", "hang", "badsnap"}[rng.IntN(4)]
	case k == 12 && w != nil:
		// Its server went down and it reconnected to another: the ring
		// may be placed anew.
		w.server = []string{"a", "b", "c"}[rng.IntN(3)]
		h.trace(n, "now on server %s", w.server)
	}
	h.settle()
}

// TestI2ExactlyOnce: every committed step's windows are exactly its global
// batch, split among its members, and steps commit once each, in order.
func TestI2ExactlyOnce(t *testing.T) {
	for seed := range uint64(chaosSeeds) {
		h := chaosRun(t, seed, func(h *harness) {
			for i, c := range h.ledger {
				var got []int32
				for _, d := range c.Dones {
					got = append(got, d.Windows...)
				}
				if c.Step != uint64(i+1) || !slices.Equal(got, h.batchOf[c.Step]) {
					h.fatalf("I2: ledger line %d: step %d windows %v, batch %v", i, c.Step, got, h.batchOf[c.Step])
				}
			}
		})
		if len(h.ledger) != int(h.ccfg.Steps) {
			t.Errorf("seed %d: %d steps in the ledger, want %d", seed, len(h.ledger), h.ccfg.Steps)
		}
		h.report(t, seed)
	}
}

// TestI3ReplicaAgreement: every replica following the run holds exactly the
// master's committed updates (its parameters are the master's of its step),
// and every report of an attempt was computed from the master's parameters.
func TestI3ReplicaAgreement(t *testing.T) {
	for seed := range uint64(chaosSeeds) {
		h := chaosRun(t, seed, func(h *harness) {
			for _, n := range h.order {
				w := h.workers[n]
				if w.m.Run() != h.c.cfg.Run || !w.m.initialised {
					continue
				}
				if int(w.m.Committed()) > len(h.master) || !slices.Equal(w.held(), h.master[:w.m.Committed()]) {
					h.fatalf("I3: %s at step %d holds %v; the master %v", n, w.m.Committed(), w.applied, h.master)
				}
			}
			for _, c := range h.ledger {
				for _, d := range c.Dones {
					if want := hash(h.master[:c.Step-1]); d.Checksum != want {
						h.fatalf("I3: step %d committed a report of %s computed from checksum %x, the master's %x", c.Step, d.Sender, d.Checksum, want)
					}
				}
			}
		})
		h.report(t, seed)
	}
}

// TestI4AllOrNothing: an attempt is applied by every replica that moves past
// its step, or by none: no replica ever applies an update that the master did
// not commit, and every replica that reaches a step applied the committed
// attempt of it.
func TestI4AllOrNothing(t *testing.T) {
	for seed := range uint64(chaosSeeds) {
		h := chaosRun(t, seed, func(h *harness) {
			for _, n := range h.order {
				w := h.workers[n]
				for i, a := range w.held() {
					if w.m.Run() == h.c.cfg.Run && w.m.initialised && (i >= len(h.master) || h.master[i] != a) {
						h.fatalf("I4: %s applied %s as step %d; the master committed %v", n, a, i+1, h.master)
					}
				}
			}
		})
		h.report(t, seed)
	}
}

func (h *harness) report(t *testing.T, seed uint64) {
	for _, p := range h.problem {
		t.Errorf("seed %d: %s", seed, p)
	}
	if len(h.problem) > 0 {
		t.Logf("seed %d trace:\n%s", seed, tail(h.out, 60))
	}
	h.problem = nil
}

var _ = fmt.Sprint
