package protocol

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestScenarios replays the stories in testdata/scenarios: each drives the
// coordinator's and the workers' state machines through a fake network and
// clock and compares the trace of decisions with the expected one. Every
// instant also checks that replicas hold exactly the committed updates (I3,
// I4) and that every step commits its batch once (I2); a violation fails the
// test whatever the expected trace says. `go test ./protocol -rewrite`
// rewrites the expected traces.
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/scenarios", func(t *testing.T, path string) {
		h := newHarness(t)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			h.t = t
			h.out, h.lastLine = nil, ""
			h.run(d)
			for _, p := range h.problem {
				t.Errorf("%s: %s", d.Pos, p)
			}
			h.problem = nil
			if len(h.out) == 0 {
				return "ok\n"
			}
			return strings.Join(h.out, "\n") + "\n"
		})
	})
}

func (h *harness) run(d *datadriven.TestData) {
	t := h.t
	args := map[string]string{}
	var names []string
	for _, a := range d.CmdArgs {
		if len(a.Vals) == 0 {
			names = append(names, a.Key)
			continue
		}
		args[a.Key] = strings.Join(a.Vals, ",")
	}
	arg := func(k, def string) string {
		if v, ok := args[k]; ok {
			return v
		}
		return def
	}
	switch d.Cmd {
	case "coordinator":
		h.ccfg = CoordinatorConfig{Steps: uint64(atoi(t, arg("steps", "3"))), MinWorkers: atoi(t, arg("min", "1")),
			StartWorkers: atoi(t, arg("start", arg("min", "1"))), Heartbeat: parseDur(t, arg("heartbeat", "1s")),
			StepDeadline: parseDur(t, arg("deadline", "5s")), MaxAttempts: atoi(t, arg("attempts", "8")),
			MaxNonFinite: atoi(t, arg("nonfinite", "3")), EvictAfter: atoi(t, arg("evict", "3")),
			VectorLen: hVector, PartFloats: hPartFloats, SnapBytes: 4096, LoadAllowance: time.Second,
			CheckpointEvery: uint64(atoi(t, arg("ckpt", "0"))), EvalEvery: uint64(atoi(t, arg("eval", "0")))}
		h.batchSize = atoi(t, arg("batch", "6"))
		// apply=150ms: the master's apply of a committed step takes that
		// long, concurrently with the next step (default: at once).
		h.applyDelay = parseDur(t, arg("apply", "0s"))
		h.coordTimeout = parseDur(t, arg("timeout", "10m"))
		h.tick = h.ccfg.Heartbeat / 2
		h.newCoordinator(0)
	case "workers":
		// workers w0 w1 [behave=badsnap] [server=a] [job=other]: start
		// worker processes (connected to NATS server a: they say so in
		// their hello and heartbeats; given job other: no coordinator
		// hears them).
		for _, n := range names {
			h.addJobWorker(n, args["server"], args["job"])
			if v, ok := args["behave"]; ok {
				h.workers[n].behave = v
			}
		}
		h.settle()
	case "move":
		// move w1 server=b: w1 reconnected to NATS server b (its own
		// went down); its next heartbeat says so.
		for _, n := range names {
			h.workers[n].server = args["server"]
			h.trace(n, "now on server %s", args["server"])
		}
	case "run":
		h.runCmd(names, args)
	case "kill":
		for _, n := range names {
			h.workers[n].dead = true
			h.trace(n, "killed")
		}
	case "corrupt":
		// The replica's parameters differ from the master's (a bit flip).
		h.workers[names[0]].corrupt = true
		h.trace(names[0], "corrupted")
	case "restart":
		for _, n := range names {
			h.trace(n, "restarted")
			h.workers[n].dead = true
			h.addWorker(n, "")
		}
		h.settle()
	case "set":
		w := h.workers[names[0]]
		if v, ok := args["behave"]; ok {
			w.behave = v
		}
		if v, ok := args["slow"]; ok {
			w.slow = parseDur(t, v)
		}
	case "lose":
		h.drops = append(h.drops, dropRule{from: arg("from", "*"), to: arg("to", "*"), kind: arg("kind", "*"), count: atoi(t, arg("n", "1"))})
	case "stop":
		for _, n := range names {
			if n == "c" {
				h.feedC(Stop{})
			} else {
				h.feedW(h.workers[n], Stop{})
			}
		}
		h.settle()
	case "freeze":
		h.cPause = h.now.Add(parseDur(t, arg("for", "1s")))
		h.trace("c", "frozen for %s", arg("for", "1s"))
	case "cut":
		// cut c for=40s: messages to and from c (or a worker) are lost.
		for _, n := range names {
			h.cut[n] = h.now.Add(parseDur(t, arg("for", "1s")))
			h.trace(n, "cut off for %s", arg("for", "1s"))
		}
	case "crash-coordinator":
		h.cDead = true
		h.trace("c", "crashed")
	case "restart-coordinator":
		from := len(h.master)
		if v, ok := args["from"]; ok {
			from = atoi(t, v)
			h.master, h.ledger = h.master[:from], h.ledger[:from]
		}
		h.newCoordinator(uint64(from))
		h.settle()
	case "disconnect":
		h.trace("c", "disconnected")
		h.feedC(Disconnected{})
		h.settle()
	case "reconnect":
		h.trace("c", "reconnected")
		h.feedC(Reconnected{})
		h.settle()
	case "refuse":
		h.refuse = atoi(t, arg("n", "1"))
	case "inject":
		h.inject(args)
		h.settle()
	case "status":
		h.status()
	case "quiet":
		// quiet start done apply: leave these actions out of the trace.
		for _, n := range names {
			h.quiet[n] = true
		}
	case "show":
		// show stage: put these actions (quiet by default) in the trace.
		for _, n := range names {
			delete(h.quiet, n)
		}
	case "verbose":
		h.verbose = true
	case "late-welcome":
		h.lateWelcome = parseDur(t, arg("by", "10ms"))
	case "logs":
		h.logs = true
	default:
		t.Fatalf("unknown command %q", d.Cmd)
	}
}

// runCmd advances the clock: "run 3s", or "run until=committed:N|end max=D".
func (h *harness) runCmd(names []string, args map[string]string) {
	if len(names) == 1 {
		h.advance(parseDur(h.t, names[0]))
		return
	}
	max := 2 * time.Minute
	if v, ok := args["max"]; ok {
		max = parseDur(h.t, v)
	}
	until := args["until"]
	done := func() bool {
		switch {
		case until == "end":
			return h.ended != nil
		case strings.HasPrefix(until, "committed:"):
			return h.c.Committed() >= uint64(atoi(h.t, strings.TrimPrefix(until, "committed:"))) || h.ended != nil
		case strings.HasPrefix(until, "exit:"):
			w := h.workers[strings.TrimPrefix(until, "exit:")]
			return w.exited
		}
		h.t.Fatalf("run until=%q", until)
		return true
	}
	end := h.now.Add(max)
	for !done() {
		if !h.stepOnce(end) {
			h.trace("--", "still not %s after %v", until, max)
			return
		}
	}
}

// inject sends a message to the coordinator as an outsider would.
func (h *harness) inject(args map[string]string) {
	var off int64
	fmt.Sscan(args["offset"], &off)
	run := h.c.cfg.Run
	if v, ok := args["run"]; ok {
		run = v
	}
	var epoch, step uint64
	fmt.Sscan(args["epoch"], &epoch)
	fmt.Sscan(args["step"], &step)
	from := args["from"]
	switch args["msg"] {
	case "segment":
		n := 1
		fmt.Sscan(args["floats"], &n)
		h.send(from, "c", "seg", &Segment{Run: run, Epoch: epoch, Step: step, Sender: from, Offset: off, Data: make([]byte, 4*n)})
	case "done":
		h.send(from, "c", "done", &Done{Run: run, Epoch: epoch, Step: step, Sender: from, Checksum: 1})
	case "heartbeat":
		h.send(from, "c", "hb", &Heartbeat{Run: run, Sender: from})
	case "plan":
		// A plan as the coordinator's, with a batch of the given windows.
		p := &Plan{Run: run, Epoch: epoch, Step: step, Base: step - 1, Members: []string{args["to"]}, LR: 0.01}
		for _, f := range strings.Split(args["batch"], ",") {
			p.Batch = append(p.Batch, int32(atoi(h.t, f)))
		}
		h.send("c", args["to"], "plan", p)
	case "snap":
		h.send(from, "c", "snap", SnapRequestMsg{SnapRequest: SnapRequest{Run: run, Sender: from, Step: step, Offset: off, Max: 1 << 20}, Reply: from})
	default:
		h.t.Fatalf("inject msg=%q", args["msg"])
	}
}

func (h *harness) status() {
	h.trace("c", "committed=%d epoch=%d members=%v ended=%v", h.c.Committed(), h.c.Epoch(), h.c.Members(), h.ended != nil)
	for _, n := range h.order {
		w := h.workers[n]
		state := "running"
		switch {
		case w.dead:
			state = "dead"
		case w.exited:
			state = fmt.Sprintf("exited (%v)", w.exitErr)
		}
		staged := ""
		if w.m.dirty {
			staged = " (the last applied early, not committed)"
		}
		h.trace(n, "%s committed=%d applied=%v%s", state, w.m.Committed(), w.applied, staged)
	}
}
