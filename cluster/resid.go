package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/protocol"
)

// The workers' error-feedback residuals in checkpoints (docs/protocol.md,
// "The bf16 wire and error feedback"). A worker that applies a step the
// coordinator checkpoints (protocol.Plan.Checkpoint) sends it the residual
// it committed with that step (residPart); the coordinator's residCollector
// gathers them per rank, and the checkpoint's writer waits a bounded time
// for every rank of the step's committed ring and writes them to
// ResidualFile. A coordinator that resumes from such a checkpoint serves
// them back as seeds (residSeeds) to the workers that load its snapshot.

// ResidualFile is the checkpoint file of the workers' error-feedback
// residuals: one float32 tensor "rank.R" of the gradient vector's length
// per rank of the ring that committed the checkpoint's step. The trainer
// state's data records their number and the file's SHA-256 (residualRecord).
const ResidualFile = "residual.safetensors"

// residualRecord is what trainer_state.json's data says of ResidualFile.
type residualRecord struct {
	World  int    `json:"world"`
	SHA256 string `json:"sha256"`
}

// ErrResidual is wrapped by every problem with a checkpoint's residuals.
var ErrResidual = errors.New("cluster: error-feedback residuals")

// encodeResiduals is ResidualFile's bytes: safetensors, rank after rank.
func encodeResiduals(ranks [][]float32, step uint64) []byte {
	ts := make([]lm.Tensor32, len(ranks))
	for r, v := range ranks {
		ts[r] = lm.Tensor32{Name: "rank." + strconv.Itoa(r), Shape: []int{len(v)}, Data: v}
	}
	return lm.EncodeSafetensors(ts, map[string]string{"format": "klring-residual", "step": strconv.FormatUint(step, 10)})
}

// decodeResiduals parses ResidualFile's bytes: exactly world tensors
// rank.0 ... rank.(world-1) of n finite float32s each.
func decodeResiduals(b []byte, world, n int) ([][]float32, error) {
	ts, _, err := lm.DecodeSafetensors32(b)
	if err != nil {
		return nil, err
	}
	if len(ts) != world {
		return nil, fmt.Errorf("%d tensors; want %d, rank.0 to rank.%d", len(ts), world, world-1)
	}
	out := make([][]float32, world)
	for r := range out {
		name := "rank." + strconv.Itoa(r)
		t, ok := ts[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("no tensor %s", name)
		case !slices.Equal(t.Shape, []int{n}):
			return nil, fmt.Errorf("tensor %s has shape %v; want [%d]", name, t.Shape, n)
		case !finiteGradient(t.Data):
			return nil, fmt.Errorf("tensor %s holds a NaN or an infinity", name)
		}
		out[r] = t.Data
	}
	return out, nil
}

// checkpointResiduals reads the residuals a checkpoint's trainer state
// records (data, lm's TrainerState.Data), each of n floats: nil when it
// records none. The file must be there, match its digest, and hold world
// tensors of n finite floats; the error names the file.
func checkpointResiduals(dir string, data json.RawMessage, n int) ([][]float32, error) {
	var ds struct {
		Residual *residualRecord `json:"residual"`
	}
	if len(data) == 0 || json.Unmarshal(data, &ds) != nil || ds.Residual == nil {
		return nil, nil // no record (an earlier format's data is a bare cursor)
	}
	path := filepath.Join(dir, ResidualFile)
	rec := ds.Residual
	if rec.World < 1 {
		return nil, fmt.Errorf("%w: %s: the trainer state records %d ranks", ErrResidual, path, rec.World)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrResidual, err)
	}
	if residualDigest(b) != rec.SHA256 {
		return nil, fmt.Errorf("%w: %s does not match the digest in the trainer state (interrupted save?)", ErrResidual, path)
	}
	ranks, err := decodeResiduals(b, rec.World, n)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrResidual, path, err)
	}
	return ranks, nil
}

// writeResiduals writes ranks to dir's ResidualFile (synced) and returns
// its record.
func writeResiduals(dir string, ranks [][]float32, step uint64) (*residualRecord, error) {
	b := encodeResiduals(ranks, step)
	f, err := os.Create(filepath.Join(dir, ResidualFile))
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &residualRecord{World: len(ranks), SHA256: residualDigest(b)}, nil
}

// residualDigest is the SHA-256 of ResidualFile's bytes, in hex.
func residualDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// residSeeds are the residuals of the checkpoint a coordinator resumed
// from, which it serves as the seeds of the first attempt after the load.
// They are read-only once made.
type residSeeds struct {
	step  uint64
	ranks [][]float32 // as saved, by rank
	sum   []float32   // their sum, in rank order
}

func newResidSeeds(step uint64, ranks [][]float32) *residSeeds {
	sum := make([]float32, len(ranks[0]))
	for _, r := range ranks {
		for i, v := range r {
			sum[i] += v
		}
	}
	return &residSeeds{step: step, ranks: ranks, sum: sum}
}

// of is the seed of rank in a ring of world ranks (nil: zero). In a ring of
// the checkpoint's size each rank takes its own residual, so the run goes
// on as if it had not stopped; in a ring of another size rank 0 takes their
// sum and the others zero, so the total correction is kept.
func (s *residSeeds) of(rank, world int) []float32 {
	switch {
	case world == len(s.ranks):
		return s.ranks[rank]
	case rank == 0:
		return s.sum
	default:
		return nil
	}
}

// Bounds of what a coordinator keeps of the workers' residuals.
const (
	keepResidRings = 8 // newest committed steps whose residuals are accepted
	keepResidSets  = 2 // steps whose residuals are held at once
)

// residCollector gathers on the coordinator the residuals the workers send
// (residPart). It is safe for concurrent use: the NATS callback adds parts,
// the protocol's goroutine registers committed rings, and the goroutine
// that writes a checkpoint waits for a step's residuals (gather).
type residCollector struct {
	n    int           // floats of a residual: the gradient vector's
	wait time.Duration // the longest gather waits
	log  *slog.Logger

	mu     sync.Mutex
	rings  []committedRing // newest last
	sets   []*residSet     // newest last
	change chan struct{}   // closed (and replaced) when a rank's residual completes
}

// committedRing is the ring that committed a step.
type committedRing struct {
	step, epoch uint64
	members     []string
}

// residSet is the residuals of one step, rank by rank.
type residSet struct {
	ring  committedRing
	ranks [][]float32
	got   []int // floats received of each rank, in order
	done  int   // ranks complete
}

func newResidCollector(n int, wait time.Duration, log *slog.Logger) *residCollector {
	return &residCollector{n: n, wait: wait, log: log, change: make(chan struct{})}
}

// committed registers the ring that committed step: its members may send
// their residuals of it.
func (c *residCollector) committed(step, epoch uint64, members []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rings = append(c.rings, committedRing{step: step, epoch: epoch, members: slices.Clone(members)})
	if len(c.rings) > keepResidRings {
		c.rings = slices.Delete(c.rings, 0, 1)
	}
}

// preset holds ranks as the complete residuals of step (those of the
// checkpoint the run resumed from: a checkpoint of that step keeps them).
func (c *residCollector) preset(step uint64, ranks [][]float32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := make([]int, len(ranks))
	for i := range got {
		got[i] = c.n
	}
	c.rings = append(c.rings, committedRing{step: step})
	c.keep(&residSet{ring: c.rings[len(c.rings)-1], ranks: ranks, got: got, done: len(ranks)})
}

// keep adds s, dropping the oldest set (and its ring) beyond keepResidSets.
func (c *residCollector) keep(s *residSet) {
	c.sets = append(c.sets, s)
	if len(c.sets) > keepResidSets {
		old := c.sets[0].ring.step
		c.sets = slices.Delete(c.sets, 0, 1)
		c.rings = slices.DeleteFunc(c.rings, func(r committedRing) bool { return r.step == old })
	}
}

func (c *residCollector) find(step uint64) (*committedRing, *residSet) {
	var ring *committedRing
	for i := range c.rings {
		if c.rings[i].step == step {
			ring = &c.rings[i]
		}
	}
	for _, s := range c.sets {
		if s.ring.step == step {
			return ring, s
		}
	}
	return ring, nil
}

// add takes a part of a worker's residual. It refuses (and the caller
// drops) a part of a step no ring of this run committed, of another
// attempt or ring than the one that did, of another length than the
// vector's, out of order, or of a rank already complete.
func (c *residCollector) add(p *residPart) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ring, s := c.find(p.Step)
	switch {
	case p.Total != int64(c.n):
		return fmt.Errorf("a residual of %d floats; the vector has %d", p.Total, c.n)
	case ring == nil || ring.epoch != p.Epoch || len(ring.members) != p.World || ring.members[p.Rank] != p.Sender:
		return fmt.Errorf("%s as rank %d of %d in epoch %d: not a rank of the ring that committed step %d", p.Sender, p.Rank, p.World, p.Epoch, p.Step)
	}
	if s == nil {
		if p.Offset != 0 || len(c.sets) == keepResidSets && slices.ContainsFunc(c.sets, func(o *residSet) bool { return o.ring.step > p.Step }) {
			return fmt.Errorf("a residual of step %d at float %d: not the start of a newer step's", p.Step, p.Offset)
		}
		s = &residSet{ring: *ring, ranks: make([][]float32, p.World), got: make([]int, p.World)}
		c.keep(s)
	}
	r := p.Rank
	switch {
	case s.got[r] == c.n:
		return fmt.Errorf("rank %d's residual of step %d is complete", r, p.Step)
	case p.Offset == 0:
		s.got[r] = 0 // a worker that sends again starts again
	case p.Offset != int64(s.got[r]):
		return fmt.Errorf("rank %d's residual of step %d: floats at %d; want %d", r, p.Step, p.Offset, s.got[r])
	}
	if s.ranks[r] == nil {
		s.ranks[r] = make([]float32, c.n)
	}
	allreduce.ReadFloats(s.ranks[r][p.Offset:p.Offset+int64(len(p.Data)/4)], p.Data)
	if s.got[r] += len(p.Data) / 4; s.got[r] == c.n {
		s.done++
		close(c.change)
		c.change = make(chan struct{})
	}
	return nil
}

// gather waits up to c.wait for the residuals of every rank of step's
// committed ring and returns them by rank; without all of them (a worker
// died, a part was lost) it logs a warning and returns nil: the checkpoint
// is written without residuals, and a run resumed from it starts error
// feedback from zero. It returns at once when no ring of this run
// committed step.
func (c *residCollector) gather(step uint64) [][]float32 {
	timer := time.NewTimer(c.wait)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ring, s := c.find(step)
		ch, have, want := c.change, 0, 0
		if ring != nil {
			want = len(ring.members)
		}
		if s != nil {
			have, want = s.done, len(s.ranks)
		}
		c.mu.Unlock()
		switch {
		case s != nil && have == want:
			return s.ranks // complete: no part changes them any more
		case ring == nil && s == nil:
			c.log.Warn("checkpoint without the workers' error-feedback residuals: no ring of this run committed the step; a run resumed from it starts error feedback from zero", "step", step)
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			c.log.Warn("checkpoint without the workers' error-feedback residuals: not all of them came; a run resumed from it starts error feedback from zero",
				"step", step, "ranks", have, "of", want, "waited", c.wait)
			return nil
		}
	}
}

// residualWait is how long a checkpoint waits for the workers' residuals
// of its step: they leave a worker when it applies the step, so they are
// due as soon as the plan that commits it is out.
func residualWait(heartbeat time.Duration) time.Duration {
	return max(5*time.Second, 4*heartbeat)
}

// welcome is the answer to a hello: the run, the job and the seeds.
func (c *Coordinator) welcome() welcome {
	wel := welcome{Run: c.run, Spec: c.spec}
	if s := c.seeds.Load(); s != nil {
		wel.Seed = &seedInfo{Step: s.step, World: len(s.ranks)}
	}
	return wel
}

// residCommitted registers the ring of a committed attempt (its members
// may send their residuals of it) and drops the seeds, which were those of
// the attempts from the step before.
func (c *Coordinator) residCommitted(a protocol.Commit) {
	if c.resid != nil {
		c.resid.committed(a.Step, a.Epoch, a.Members)
		c.seeds.Store(nil)
	}
}

// gatherResid is what a checkpoint calls to gather the workers' residuals
// of its step; nil without error feedback.
func (c *Coordinator) gatherResid() func(uint64) [][]float32 {
	if c.resid == nil {
		return nil
	}
	return c.resid.gather
}

// onResid takes a part of a worker's residual (a NATS callback); a part
// that does not decode or fit is dropped and counted, and costs nothing
// else.
func (c *Coordinator) onResid(m *nats.Msg) {
	p := new(residPart)
	err := decodeValid(m.Data, p)
	if err == nil && p.Run != c.run {
		err = fmt.Errorf("run %q is not the current run", p.Run)
	}
	if err == nil {
		err = c.resid.add(p)
	}
	if err != nil {
		c.prom.Dropped.WithLabelValues("residual").Inc()
		c.log.Debug("dropping a residual part", "err", err)
	}
}

// serveSeed answers a worker's request for a chunk of its seed (a NATS
// callback, reading only the read-only seeds).
func (c *Coordinator) serveSeed(m *nats.Msg) {
	var r seedRequest
	err := decodeValid(m.Data, &r)
	if err == nil && m.Reply == "" {
		err = errors.New("a seed request without a reply subject")
	}
	if err != nil {
		c.prom.Dropped.WithLabelValues("seed").Inc()
		c.log.Debug("dropping a seed request", "err", err)
		return
	}
	s := c.seeds.Load()
	n := int64(c.resid.n)
	switch {
	case r.Run != c.run:
		c.respond(m.Reply, seedChunk{Run: c.run, Err: fmt.Sprintf("run %q is not the current run %q", r.Run, c.run)})
	case s == nil || s.step != r.Step:
		c.respond(m.Reply, seedChunk{Run: c.run, Err: fmt.Sprintf("no error-feedback seed of step %d", r.Step)})
	case r.Offset >= n:
		c.respond(m.Reply, seedChunk{Run: c.run, Err: fmt.Sprintf("offset %d outside the %d-float seed", r.Offset, n)})
	default:
		ch := seedChunk{Run: c.run, Step: s.step, Total: n, Offset: r.Offset}
		if v := s.of(r.Rank, r.World); v == nil {
			ch.Zero = true
		} else {
			k := min(r.Max, int64(max(1, (c.cfg.AllReduce.ChunkBytes-512)/4)), n-r.Offset)
			ch.Data = allreduce.AppendFloats(nil, v[r.Offset:r.Offset+k])
		}
		c.respond(m.Reply, ch)
	}
}

// sendResidual sends the coordinator, which checkpoints committed attempt
// (epoch, step), the residual this worker committed with it, in parts of
// at most chunk_bytes. It runs before the next attempt starts (which reads
// the residual), in the worker's loop.
func (w *Worker) sendResidual(epoch, step uint64) {
	j := w.job
	at := j.residAt
	if j.resid == nil || !at.is(epoch, step) {
		return // no residual of that attempt: the checkpoint goes without (logged there)
	}
	per := max(1, (j.spec.ChunkBytes-256)/4)
	p := residPart{Run: w.run, Epoch: epoch, Step: step, Sender: w.id, Rank: at.rank, World: at.world, Total: int64(len(j.resid))}
	for lo := 0; lo < len(j.resid); lo += per {
		hi := min(lo+per, len(j.resid))
		w.residBuf = allreduce.AppendFloats(w.residBuf[:0], j.resid[lo:hi])
		p.Offset, p.Data = int64(lo), w.residBuf
		b, err := encode(p)
		if err != nil {
			w.log.Error("encoding", "err", err)
			return
		}
		if err := w.nc.Publish(w.subj.Resid, b); err != nil {
			w.log.Debug("publishing", "subject", w.subj.Resid, "err", err)
			return
		}
	}
	w.nc.Flush()
}

// seedResidual makes the residual of an attempt from the step the
// coordinator resumed from the seed it serves for this rank of the
// attempt's ring (residSeeds.of), when this replica loaded that step's
// snapshot and has not committed since; it does nothing otherwise. A retry
// with another rank or world asks again.
func (w *Worker) seedResidual(ctx context.Context, p protocol.Plan, rank int) error {
	j := w.job
	if j.seed == nil || j.seed.Step != p.Base || j.resid == nil {
		return nil
	}
	n := int64(len(j.resid))
	for off := int64(0); off < n; {
		var ch seedChunk
		req := seedRequest{Run: p.Run, Sender: w.id, Step: p.Base, Rank: rank, World: len(p.Members), Offset: off, Max: n}
		if err := w.request(ctx, w.subj.Seed, req, &ch); err != nil {
			return fmt.Errorf("requesting the seed at float %d: %w", off, err)
		}
		k := int64(len(ch.Data) / 4)
		switch {
		case ch.Err != "":
			return errors.New(ch.Err)
		case ch.Run != p.Run || ch.Step != p.Base || ch.Total != n:
			return fmt.Errorf("a seed of run %q step %d of %d floats; want run %q step %d of %d", ch.Run, ch.Step, ch.Total, p.Run, p.Base, n)
		case ch.Zero:
			clear(j.resid)
			return nil
		case ch.Offset != off || k == 0 || len(ch.Data)%4 != 0 || k > n-off:
			return fmt.Errorf("seed chunk at %d answered for %d with %d bytes", off, ch.Offset, len(ch.Data))
		}
		allreduce.ReadFloats(j.resid[off:off+k], ch.Data)
		off += k
	}
	return nil
}
