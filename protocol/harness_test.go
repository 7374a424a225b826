package protocol

import (
	"container/heap"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
)

// The scenario harness: one coordinator machine and worker machines, a
// network of queued messages, a fake clock, and a model of everything the
// runtimes do (compute, ring, snapshots, commits). Each replica's parameters
// are modelled by the list of attempts it applied ("step@epoch"), its
// checksum by a hash of that list, so that applying any update other than the
// committed one shows up as a divergent history (I3, I4).

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	hVector     = 1002 // floats of the all-reduced vector
	hPartFloats = 100
	hWindows    = 1000 // windows of the data
	hTokens     = 8    // tokens per window
)

// timing of the modelled runtimes
type timing struct {
	compute, ring, load, arDeadline, helloTimeout time.Duration
}

type hWorker struct {
	name     string
	m        *Worker
	dead     bool // killed: receives and sends nothing
	applied  []string
	staged   string // the update staged by the last successful StepDone
	behave   string // ok, fail, nonfinite, hang, badsnap
	slow     time.Duration
	epochGen int // bumps on every StartStep/cancel so old timers are ignored
	loadGen  int
	exitErr  error
	exited   bool
	corrupt  bool // its parameters differ from its history's (a bit flip)
	helloGen int
	server   string // the NATS server it is connected to ("": unknown)
	job      string // the job it was given ("": the coordinator's)
}

// held is the committed part of w's history: all of it but an update
// applied as soon as it was done (ApplyStaged) that no plan has committed
// or discarded yet (a discarded one makes the replica reload).
func (w *hWorker) held() []string {
	if w.m.dirty {
		return w.applied[:len(w.applied)-1]
	}
	return w.applied
}

func (w *hWorker) checksum() uint64 {
	if w.corrupt {
		return hash(w.applied) ^ 1
	}
	return hash(w.applied)
}

type ringKey struct {
	run         string
	epoch, step uint64
}

type hRing struct {
	members []string
	entered map[string]bool
	done    bool
}

type timer struct {
	at  time.Time
	seq int
	fn  func()
}

type timers []*timer

func (t timers) Len() int { return len(t) }
func (t timers) Less(i, j int) bool {
	return t[i].at.Before(t[j].at) || t[i].at.Equal(t[j].at) && t[i].seq < t[j].seq
}
func (t timers) Swap(i, j int) { t[i], t[j] = t[j], t[i] }
func (t *timers) Push(x any)   { *t = append(*t, x.(*timer)) }
func (t *timers) Pop() any {
	o := *t
	x := o[len(o)-1]
	*t = o[:len(o)-1]
	return x
}

// msg is a message in flight.
type msg struct {
	from, to string // "c" for the coordinator
	ev       Event
	kind     string
}

// dropRule drops the next count messages of kind from -> to ("*" matches any).
type dropRule struct {
	from, to, kind string
	count          int
}

type harness struct {
	t      testing.TB
	now    time.Time
	seq    int
	tm     timers
	tick   time.Duration
	ccfg   CoordinatorConfig
	c      *Coordinator
	cDead  bool
	cPause time.Time            // the coordinator is frozen until then
	cut    map[string]time.Time // messages to and from a machine are lost until then
	runs   int
	// the master copy and the run's records
	master  []string
	ledger  []Commit
	ended   *End
	refuse  int // refuse this many commits as non-finite
	timing  timing
	workers map[string]*hWorker
	order   []string
	queue   []msg
	held    []msg // messages for a frozen coordinator
	drops   []dropRule
	rings   map[ringKey]*hRing
	batchOf map[uint64][]int32
	out     []string
	verbose bool
	logs    bool // trace every Log action
	check   func(h *harness)
	quiet   map[string]bool // action kinds not traced
	problem []string

	ticked   time.Time // the last tick instant
	lastLine string
	repeat   int

	lateWelcome time.Duration // welcomes arrive this much after they are sent
	// applyDelay is how long the runtime's apply of a committed step to
	// the master copy takes (0: Applied follows Committed at once, before
	// the next step's work is given).
	applyDelay   time.Duration
	applying     uint64 // the step being applied to the master copy (0: none)
	batchSize    int
	coordTimeout time.Duration
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, now: t0, workers: map[string]*hWorker{}, rings: map[ringKey]*hRing{}, batchOf: map[uint64][]int32{},
		timing: timing{compute: 100 * time.Millisecond, ring: 20 * time.Millisecond, load: 30 * time.Millisecond,
			arDeadline: 4 * time.Second, helloTimeout: 2 * time.Second},
		quiet: map[string]bool{"stage": true}, cut: map[string]time.Time{}}
}

func hash(h []string) uint64 {
	f := fnv.New64a()
	for _, s := range h {
		f.Write([]byte(s))
		f.Write([]byte{0})
	}
	return f.Sum64()
}

func (h *harness) at(d time.Duration, fn func()) {
	h.seq++
	heap.Push(&h.tm, &timer{at: h.now.Add(d), seq: h.seq, fn: fn})
}

func (h *harness) trace(who, format string, args ...any) {
	ms := h.now.Sub(t0).Milliseconds()
	line := fmt.Sprintf("%6.2fs %-3s %s", float64(ms)/1000, who, fmt.Sprintf(format, args...))
	if n := len(h.out); n > 0 && line == h.lastLine {
		h.repeat++
		h.out[n-1] = fmt.Sprintf("%s (x%d)", line, h.repeat)
		return
	}
	h.lastLine, h.repeat = line, 1
	h.out = append(h.out, line)
}

func (h *harness) fatalf(format string, args ...any) {
	h.problem = append(h.problem, fmt.Sprintf("%.2fs: ", float64(h.now.Sub(t0).Milliseconds())/1000)+fmt.Sprintf(format, args...))
}

// batch is the global batch of step s: windows 10s..10s+G-1 (wrapping).
func (h *harness) batch(s uint64, g int) []int32 {
	b := make([]int32, g)
	for i := range b {
		b[i] = int32((int(s)*17 + i) % hWindows)
	}
	return b
}

func (h *harness) newCoordinator(base uint64) {
	h.runs++
	cfg := h.ccfg
	cfg.Run = fmt.Sprintf("run%d", h.runs)
	cfg.Base = base
	cfg.BaseChecksum = hash(h.master)
	c, err := NewCoordinator(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.c, h.cDead, h.ended, h.applying = c, false, nil, 0
	h.trace("c", "start run=%s base=%d", cfg.Run, base)
	if base < cfg.Steps {
		h.feedC(h.nextStep(base + 1))
	}
}

func (h *harness) nextStep(s uint64) NextStep {
	b := h.batch(s, h.batchSize)
	h.batchOf[s] = b
	return NextStep{Step: s, Batch: b, LR: 0.01}
}

// addWorker starts worker process name, connected to NATS server server
// ("": the server it was on before, if it ran before).
func (h *harness) addWorker(name, server string) { h.addJobWorker(name, server, "") }

// addJobWorker is addWorker given job job ("": the coordinator's, or the
// one it was given before).
func (h *harness) addJobWorker(name, server, job string) {
	if w := h.workers[name]; w != nil {
		if !w.exited && !w.dead {
			h.t.Fatalf("worker %s is running", name)
		}
		if server == "" {
			server = w.server // a restart on the same node
		}
		if job == "" {
			job = w.job
		}
	}
	named := job
	if named == "" {
		named = "klring"
	}
	m, err := NewWorker(WorkerConfig{Name: name, CoordinatorTimeout: h.coordTimeout, HelloRetry: 500 * time.Millisecond,
		Job: named, HelloSubject: "klring." + named + ".hello"})
	if err != nil {
		h.t.Fatal(err)
	}
	h.workers[name] = &hWorker{name: name, m: m, behave: "ok", server: server, job: job}
	if !slices.Contains(h.order, name) {
		h.order = append(h.order, name)
	}
	h.feedW(h.workers[name], Tick{})
}

// send queues a message unless a drop rule or a partition takes it. A
// worker given another job (hWorker.job) hears from no coordinator and no
// coordinator hears it: its subjects are another job's.
func (h *harness) send(from, to, kind string, ev Event) {
	for _, n := range []string{from, to} {
		if w := h.workers[n]; w != nil && w.job != "" {
			return
		}
	}
	if h.now.Before(h.cut[from]) || h.now.Before(h.cut[to]) {
		if h.verbose {
			h.trace(from, "(cut off: %s to %s)", kind, to)
		}
		return
	}
	for i := range h.drops {
		r := &h.drops[i]
		if r.count > 0 && (r.from == "*" || r.from == from) && (r.to == "*" || r.to == to) && (r.kind == "*" || r.kind == kind) {
			r.count--
			h.trace(from, "(lost %s to %s)", kind, to)
			return
		}
	}
	h.queue = append(h.queue, msg{from: from, to: to, ev: ev, kind: kind})
}

// settle delivers messages until none is left.
func (h *harness) settle() {
	for n := 0; len(h.queue) > 0; n++ {
		if n > 100000 {
			h.t.Fatal("messages do not settle")
		}
		m := h.queue[0]
		h.queue = h.queue[1:]
		if m.to == "c" {
			if h.cDead || h.ended != nil && h.c.Ended() && m.kind != "snap" {
				continue
			}
			if h.now.Before(h.cPause) {
				h.held = append(h.held, m)
				continue
			}
			h.feedC(m.ev)
			continue
		}
		w := h.workers[m.to]
		if w == nil || w.dead || w.exited {
			continue
		}
		if r, ok := m.ev.(snapReply); ok {
			if w.m.loading != nil {
				w.loadGen++
				h.deliverSnap(w, r, *w.m.loading)
			}
			continue
		}
		if _, ok := m.ev.(Welcomed); ok {
			w.helloGen++
		}
		h.feedW(w, m.ev)
	}
	h.checkInvariants()
	if h.check != nil {
		h.check(h)
	}
}

func (h *harness) feedC(ev Event) {
	for _, a := range h.c.Step(ev, h.now) {
		h.doC(a)
	}
}

func (h *harness) feedW(w *hWorker, ev Event) {
	for _, a := range w.m.Step(ev, h.now) {
		h.doW(w, a)
	}
}

func (h *harness) shown(kind string) bool { return h.verbose || !h.quiet[kind] }

func (h *harness) doC(a Action) {
	switch a := a.(type) {
	case SendPlan:
		p := a.Plan
		switch {
		case p.Final || p.Pause:
			if h.shown("plan") {
				h.trace("c", "plan %s epoch=%d base=%d commit_epoch=%d", map[bool]string{true: "final", false: "pause"}[p.Final], p.Epoch, p.Base, p.CommitEpoch)
			}
		case len(p.Members) == 0:
			if h.verbose {
				h.trace("c", "announce run=%s", p.Run)
			}
		default:
			if h.shown("plan") {
				h.trace("c", "plan epoch=%d step=%d members=%v commit_epoch=%d%s", p.Epoch, p.Step, p.Members, p.CommitEpoch, optList(" resync=", p.Resync))
			}
		}
		for _, name := range h.order {
			pp := p
			h.send("c", name, "plan", &pp)
		}
	case BeginAttempt:
	case Welcome:
		w := h.workers[a.Reply]
		if w == nil {
			break
		}
		ev := Welcomed{Run: h.c.cfg.Run, Windows: hWindows, Heartbeat: h.ccfg.Heartbeat}
		if h.lateWelcome > 0 {
			// The reply travels another path than the plans and may be
			// overtaken by them.
			h.at(h.lateWelcome, func() { h.send("c", a.Reply, "welcome", ev) })
			break
		}
		h.send("c", a.Reply, "welcome", ev)
	case ServeSnap:
		if h.applying != 0 {
			h.fatalf("the coordinator serves a snapshot of step %d while step %d is being applied", a.Step, h.applying)
		}
		if h.applyDelay > 0 && h.shown("serve") {
			h.trace("c", "serve snapshot step=%d to %s", a.Step, a.Reply)
		}
		h.send("c", a.Reply, "snapchunk", snapReply{step: a.Step, history: slices.Clone(h.master)})
	case RefuseSnap:
		h.send("c", a.Reply, "snapchunk", snapReply{err: a.Reason})
	case StoreSegment:
		if a.Offset < 0 || a.Offset > hVector || len(a.Data)/4 > hVector-a.Offset {
			h.fatalf("the coordinator stores %d floats at %d, outside the %d-float vector", len(a.Data)/4, a.Offset, hVector)
		}
	case Commit:
		h.commit(a)
	case Abort:
		h.trace("c", "abort step=%d epoch=%d %s: %s%s", a.Step, a.Epoch, a.Kind, a.Reason, optList(" blame=", a.Blame))
	case Membership:
		if h.shown("membership") {
			h.trace("c", "membership epoch=%d %v", a.Epoch, placed(a.Members, a.Servers))
		}
	case Evicted:
		h.trace("c", "evict %s until +%v: %s", a.Worker, a.Until.Sub(h.now), a.Reason)
	case Checkpoint:
		if h.applying != 0 {
			h.fatalf("checkpoint of step %d while step %d is being applied", a.Step, h.applying)
		}
		h.trace("c", "checkpoint step=%d", a.Step)
	case Evaluate:
		if h.applying != 0 {
			h.fatalf("evaluation of step %d while step %d is being applied", a.Step, h.applying)
		}
		h.trace("c", "evaluate step=%d", a.Step)
	case End:
		if h.applying != 0 {
			h.fatalf("the run ends while step %d is being applied", h.applying)
		}
		e := a
		h.ended = &e
		h.trace("c", "end err=%v", a.Err)
	case Drop:
		if h.shown("drop") {
			h.trace("c", "drop %s: %s", a.Kind, a.Reason)
		}
	case Log:
		if h.verbose || h.logs || a.Level >= slog.LevelWarn {
			h.trace("c", "%s", a)
		}
	default:
		h.t.Fatalf("coordinator action %T", a)
	}
}

// placed shows members with the servers the coordinator knows them on
// (w0@a), when it knows any.
func placed(members, servers []string) []string {
	out := slices.Clone(members)
	for i, s := range servers {
		if s != "" {
			out[i] += "@" + s
		}
	}
	return out
}

// snapReply is the harness's snapshot: the master's history.
type snapReply struct {
	step    uint64
	history []string
	err     string
}

func (snapReply) event() {}

func optList(pre string, l []string) string {
	if len(l) == 0 {
		return ""
	}
	return pre + fmt.Sprint(l)
}

// commit is the coordinator runtime's commit: check I2 for the attempt, apply
// it to the master copy, record the ledger.
func (h *harness) commit(a Commit) {
	if h.refuse > 0 {
		h.refuse--
		h.trace("c", "commit refused step=%d epoch=%d", a.Step, a.Epoch)
		h.feedC(CommitRefused{Step: a.Step, Kind: AbortNonFinite, Reason: "gradient norm NaN"})
		return
	}
	var got []int32
	for r, d := range a.Dones {
		if d.Sender != a.Members[r] {
			h.fatalf("commit of step %d: rank %d reported by %s, member %s", a.Step, r, d.Sender, a.Members[r])
		}
		got = append(got, d.Windows...)
	}
	if !slices.Equal(got, a.Batch) {
		h.fatalf("I2: step %d commits windows %v; its batch is %v", a.Step, got, a.Batch)
	}
	if want := h.batchOf[a.Step]; !slices.Equal(a.Batch, want) {
		h.fatalf("I2: step %d commits batch %v; the data's is %v", a.Step, a.Batch, want)
	}
	if len(h.master) != int(a.Step)-1 {
		h.fatalf("I2: step %d committed after %d steps", a.Step, len(h.master))
	}
	h.master = append(h.master, fmt.Sprintf("%d@%d", a.Step, a.Epoch))
	h.ledger = append(h.ledger, a)
	if h.shown("commit") {
		h.trace("c", "commit step=%d epoch=%d attempt=%d members=%v", a.Step, a.Epoch, a.Attempt, a.Members)
	}
	if h.applying != 0 {
		h.fatalf("commit of step %d while step %d is being applied", a.Step, h.applying)
	}
	h.applying = a.Step
	h.feedC(Committed{Step: a.Step})
	sum := hash(h.master)
	if h.applyDelay == 0 {
		h.applied(a.Step, sum)
	}
	if h.c.WantsWork() {
		h.feedC(h.nextStep(a.Step + 1))
	}
	if h.applyDelay > 0 {
		c := h.c
		var done func()
		done = func() {
			switch {
			case h.c != c || h.cDead:
			case h.now.Before(h.cPause):
				// A frozen coordinator takes its apply's end when it
				// resumes.
				h.at(h.cPause.Sub(h.now), done)
			default:
				h.applied(a.Step, sum)
			}
		}
		h.at(h.applyDelay, done)
	}
}

// applied is the end of the runtime's apply of step s to the master copy.
func (h *harness) applied(s, sum uint64) {
	h.applying = 0
	if h.applyDelay > 0 && h.shown("applied") {
		h.trace("c", "applied step=%d", s)
	}
	h.feedC(Applied{Step: s, Checksum: sum})
}

func (h *harness) doW(w *hWorker, a Action) {
	switch a := a.(type) {
	case SayHello:
		// A request: unanswered, it fails after its timeout.
		w.helloGen++
		gen := w.helloGen
		h.at(h.timing.helloTimeout, func() {
			if !w.dead && !w.exited && w.helloGen == gen {
				h.feedW(w, HelloFailed{Err: errors.New("no responders")})
			}
		})
		if !h.cDead {
			h.send(w.name, "c", "hello", HelloMsg{Hello: Hello{Worker: w.name, Server: w.server}, Reply: w.name})
		}
	case StartStep:
		h.startStep(w, a)
	case CancelStep:
		w.epochGen++
		if h.verbose {
			h.trace(w.name, "cancel epoch=%d step=%d", a.Epoch, a.Step)
		}
	case ApplyStaged:
		want := fmt.Sprintf("%d@%d", a.Step, a.Epoch)
		if w.staged != want {
			h.fatalf("%s applies %s but staged %s", w.name, want, w.staged)
		}
		w.applied = append(w.applied, w.staged)
		if h.shown("stage") {
			h.trace(w.name, "apply staged step=%d epoch=%d", a.Step, a.Epoch)
		}
	case ApplyPending:
		want := fmt.Sprintf("%d@%d", a.Step, a.Epoch)
		if w.staged != want || len(w.applied) == 0 || w.applied[len(w.applied)-1] != want {
			h.fatalf("%s commits %s but staged %s and applied %v", w.name, want, w.staged, w.applied)
		}
		w.staged = ""
		if h.shown("apply") {
			h.trace(w.name, "apply step=%d epoch=%d%s", a.Step, a.Epoch, map[bool]string{true: " checkpoint"}[a.Checkpoint])
		}
	case LoadSnapshot:
		w.loadGen++
		if h.shown("load") {
			h.trace(w.name, "load snapshot step=%d", a.Step)
		}
		if w.behave == "badsnap" {
			gen := w.loadGen
			h.at(h.timing.load, func() {
				if !w.dead && w.loadGen == gen {
					h.feedW(w, SnapshotLoaded{Step: a.Step, Err: errors.New("checksum mismatch")})
				}
			})
			return
		}
		gen := w.loadGen
		h.at(h.timing.helloTimeout, func() {
			if !w.dead && !w.exited && w.loadGen == gen {
				h.feedW(w, SnapshotLoaded{Step: a.Step, Err: errors.New("snapshot request timed out")})
			}
		})
		h.send(w.name, "c", "snap", SnapRequestMsg{SnapRequest: SnapRequest{Run: w.m.run, Sender: w.name, Step: a.Step, Max: 1 << 20}, Reply: w.name})
	case CancelLoad:
		w.loadGen++
	case SendDone:
		d := a.Done
		if h.shown("done") {
			h.trace(w.name, "done epoch=%d step=%d%s", d.Epoch, d.Step, map[bool]string{true: " err=" + d.ErrKind, false: ""}[d.Err != ""])
		}
		h.send(w.name, "c", "done", &d)
	case SendHeartbeat:
		hb := a.Heartbeat
		hb.Server = w.server // the runtime fills in where it is connected
		h.send(w.name, "c", "hb", &hb)
	case Exit:
		w.exited, w.exitErr = true, a.Err
		h.trace(w.name, "exit err=%v", a.Err)
	case Log:
		if h.verbose || h.logs || a.Level >= slog.LevelWarn {
			h.trace(w.name, "%s", a)
		}
	default:
		h.t.Fatalf("worker action %T", a)
	}
}

// startStep models the worker runtime: compute, then the ring, then the
// owner's segments to the coordinator and the report.
func (h *harness) startStep(w *hWorker, a StartStep) {
	w.epochGen++
	gen := w.epochGen
	p := a.Plan
	if h.shown("start") {
		h.trace(w.name, "start epoch=%d step=%d rank=%d windows=%v", p.Epoch, p.Step, a.Rank, a.Windows)
	}
	rep := Done{Run: p.Run, Epoch: p.Epoch, Step: p.Step, Sender: w.name, Rank: a.Rank, Windows: a.Windows,
		Tokens: int64(len(a.Windows) * hTokens), LossSum: float64(len(a.Windows) * hTokens), Checksum: w.checksum()}
	live := func() bool { return !w.dead && !w.exited && w.epochGen == gen }
	switch w.behave {
	case "hang":
		return
	case "fail", "nonfinite":
		h.at(h.timing.compute, func() {
			if live() {
				rep.Err, rep.ErrKind = "computing the gradient: boom", FailCompute
				if w.behave == "nonfinite" {
					rep.Err, rep.ErrKind = "loss sum NaN", FailNonFinite
				}
				h.feedW(w, StepDone{Report: rep})
			}
		})
		return
	}
	key := ringKey{p.Run, p.Epoch, p.Step}
	h.at(h.timing.compute+w.slow, func() {
		if !live() {
			return
		}
		r := h.rings[key]
		if r == nil {
			r = &hRing{members: p.Members, entered: map[string]bool{}}
			h.rings[key] = r
		}
		r.entered[w.name] = true
		if len(r.entered) == len(r.members) && !r.done {
			r.done = true
			h.at(h.timing.ring, func() { h.finishRing(key, p) })
		}
		h.at(h.timing.arDeadline, func() {
			if live() && !r.done {
				rep.Err, rep.ErrKind = "all-reduce: deadline", FailAllReduce
				h.feedW(w, StepDone{Report: rep})
			}
		})
	})
}

// finishRing ends a ring whose members all entered: each member still on it
// sends its owned segment to the coordinator and reports.
func (h *harness) finishRing(key ringKey, p Plan) {
	n := len(p.Members)
	plan := allreduce.NewPlan(hVector, n, hPartFloats)
	for r, name := range p.Members {
		w := h.workers[name]
		if w == nil || w.dead || w.exited || w.m.inflight == nil || w.m.inflight.epoch != key.epoch || w.m.inflight.step != key.step {
			continue
		}
		seg := (r + 1) % n
		for j := 0; j < plan.Parts(seg); j++ {
			off, l := plan.Part(seg, j)
			h.send(name, "c", "seg", &Segment{Run: p.Run, Epoch: p.Epoch, Step: p.Step, Sender: name, Offset: int64(off), Data: make([]byte, 4*l)})
		}
		w.staged = fmt.Sprintf("%d@%d", p.Step, p.Epoch)
		rep := Done{Run: p.Run, Epoch: p.Epoch, Step: p.Step, Sender: name, Rank: r,
			Windows: shardOf(p.Batch, r, n), Tokens: int64(len(shardOf(p.Batch, r, n)) * hTokens), Checksum: w.checksum()}
		rep.LossSum = float64(rep.Tokens)
		h.feedW(w, StepDone{Report: rep})
	}
}

func shardOf(b []int32, r, n int) []int32 {
	q, m := len(b)/n, len(b)%n
	lo := r*q + min(r, m)
	hi := lo + q
	if r < m {
		hi++
	}
	return b[lo:hi]
}

// checkInvariants checks, after every settled instant, that every replica's
// history is a prefix of the master's (I3, I4: a worker holds exactly the
// committed updates, in order, and at most one more, applied early and not
// yet committed or discarded) and that the ledger commits steps 1..n once.
func (h *harness) checkInvariants() {
	for _, name := range h.order {
		w := h.workers[name]
		if w.m.Run() != h.c.cfg.Run || !w.m.initialised {
			continue // it has not loaded this incarnation's snapshot yet
		}
		held := w.held()
		if len(held) > len(h.master) || !slices.Equal(held, h.master[:len(held)]) {
			h.fatalf("I3/I4: %s holds %v; the master %v", name, w.applied, h.master)
		}
	}
	for i, c := range h.ledger {
		if c.Step != uint64(i+1) {
			h.fatalf("I2: ledger line %d is step %d", i, c.Step)
		}
	}
}

// advance moves the clock by d: every tick period each live machine gets a
// Tick (after the messages that arrived were delivered), and timers fire.
func (h *harness) advance(d time.Duration) {
	end := h.now.Add(d)
	for h.stepOnce(end) {
	}
}

// stepOnce moves the clock to the next instant something happens (a timer,
// a tick), no later than end, and runs it; it reports whether it did.
func (h *harness) stepOnce(end time.Time) bool {
	h.settle()
	next := h.nextTick()
	if len(h.tm) > 0 && h.tm[0].at.Before(next) {
		next = h.tm[0].at
	}
	if next.After(end) {
		h.now = end
		h.settle()
		return false
	}
	h.now = next
	for len(h.tm) > 0 && !h.tm[0].at.After(h.now) {
		t := heap.Pop(&h.tm).(*timer)
		t.fn()
		h.settle()
	}
	if h.now.Equal(h.nextTick()) {
		h.tickAll()
	}
	return true
}

// nextTick is the first tick instant not before now that has not ticked.
func (h *harness) nextTick() time.Time {
	el := h.now.Sub(t0)
	n := el / h.tick
	if el%h.tick != 0 || !h.ticked.Before(h.now) {
		n++
	}
	if h.ticked.Equal(t0.Add(n * h.tick)) {
		n++
	}
	return t0.Add(n * h.tick)
}

func (h *harness) tickAll() {
	h.ticked = h.now
	if !h.cDead && !h.now.Before(h.cPause) {
		if len(h.held) > 0 {
			// A frozen coordinator resumes: first what waited for it.
			held := h.held
			h.held = nil
			h.queue = append(held, h.queue...)
			h.settle()
		}
		if !h.c.Ended() {
			h.feedC(Tick{})
		}
	}
	for _, name := range h.order {
		if w := h.workers[name]; !w.dead && !w.exited {
			h.feedW(w, Tick{})
		}
	}
	h.settle()
}

// deliverSnap is called for snapReply messages (see feedW wrapper).
func (h *harness) deliverSnap(w *hWorker, r snapReply, step uint64) {
	if r.err != "" {
		h.feedW(w, SnapshotLoaded{Step: step, Err: errors.New(r.err)})
		return
	}
	if r.step != step {
		return // an answer to an earlier request
	}
	w.applied = r.history[:r.step]
	w.staged, w.corrupt = "", false
	h.feedW(w, SnapshotLoaded{Step: r.step})
}

func parseDur(t testing.TB, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

func atoi(t testing.TB, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("number %q: %v", s, err)
	}
	return n
}

func sortedKeys(m map[string]*hWorker) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
