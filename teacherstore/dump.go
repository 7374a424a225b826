package teacherstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
)

// TeacherSHA256 is the hex SHA-256 of the teacher's weights, the
// model.safetensors of the checkpoint folder dir (what a store and a
// training run's welcome name the teacher by).
func TeacherSHA256(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, lm.ModelFile))
	if err != nil {
		return "", fmt.Errorf("hashing the teacher: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing the teacher: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DumpOptions configure Dump.
type DumpOptions struct {
	// K is the entries kept per position, 1..the teacher's vocabulary.
	K int
	// Dtype of the probabilities (0: Float32).
	Dtype Dtype
	// Temperature of the teacher's softmax (0: 1).
	Temperature float64
	// Batch is the windows of one teacher forward pass (0: 8; negative is
	// an error); it is cut so that a batch's top-k rows stay within 256 MiB.
	Batch int
	// TeacherSHA256 names the teacher (TeacherSHA256 of its folder).
	TeacherSHA256 string
	// Pool splits the top-k selection of each chunk of rows (nil: one
	// thread). The teacher's forward pass runs on its own pool.
	Pool *kernels.Pool
	// Progress, when not nil, is called after every batch with the windows
	// written and the total.
	Progress func(done, total int)
	// SyncEvery is how often progress is made durable (0: 10 s).
	SyncEvery time.Duration
}

// DumpStats is what Dump did.
type DumpStats struct {
	Path          string
	Header        Header
	Windows       int     // in the store
	Tokens        int     // positions in the store: Windows * Ctx
	Resumed       int     // windows already written by an earlier run
	Dropped       int     // windows an earlier run recorded that were written again: window Resumed was cut off or damaged (Writer.Dropped)
	Complete      bool    // the store was complete before this run
	NewTokens     int     // positions computed by this run
	Seconds       float64 // of this run's computing
	TokensPerS    float64 // NewTokens / Seconds
	FileBytes     int64
	BytesPerToken float64
	MeanKept      float64 // mean teacher mass kept by the top k
}

// Dump runs teacher (forward only) over every window of data, training and
// held-out alike, and writes the top K of its next-token distribution at
// each position into the store at path (Create: atomic, and resumable: a
// run stopped by ctx or a crash is continued by the next Dump of the same
// store). data's windows must fit the teacher: its context at most the
// teacher's, its vocabulary at most the teacher's. A complete store of the
// same header is not written again (DumpStats.Complete); a damaged one is
// an error saying to remove it. The store is verified (every window's
// checksum) before it is renamed to path (Writer.Finish).
func Dump(ctx context.Context, path string, teacher *lm.Model, data *shard.Dataset, o DumpOptions) (DumpStats, error) {
	cfg := teacher.Config
	T, V := data.Ctx(), cfg.Vocab
	if o.Dtype == 0 {
		o.Dtype = Float32
	}
	if o.Temperature == 0 {
		o.Temperature = 1
	}
	if o.Batch < 0 {
		return DumpStats{}, fmt.Errorf("teacher dump: batch = %d, want the windows of a forward pass, at least 1 (0: 8)", o.Batch)
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if o.SyncEvery <= 0 {
		o.SyncEvery = 10 * time.Second
	}
	if o.Pool == nil {
		o.Pool = kernels.NewPool(1)
	}
	switch {
	case o.K < 1 || o.K > V:
		return DumpStats{}, fmt.Errorf("teacher dump: top k = %d, want 1..%d (the teacher's vocabulary)", o.K, V)
	case T > cfg.Ctx:
		return DumpStats{}, fmt.Errorf("teacher dump: windows of %d tokens, the teacher's context is %d", T, cfg.Ctx)
	case data.Vocab() > V:
		return DumpStats{}, fmt.Errorf("teacher dump: data %s has vocabulary %d, the teacher only %d", data.Source(), data.Vocab(), V)
	}
	h := Header{TeacherSHA256: o.TeacherSHA256, Data: DataKey(data.Fingerprint()), Vocab: V, Ctx: T, K: o.K,
		Dtype: o.Dtype, Temperature: o.Temperature, Windows: data.NumWindows()}
	st := DumpStats{Path: path, Header: h, Windows: h.Windows, Tokens: h.Windows * T}
	w, err := Create(path, h)
	if errors.Is(err, ErrExists) {
		return st, existing(&st, path)
	}
	if err != nil {
		return st, err
	}
	defer w.Close()
	st.Resumed, st.Dropped = w.Done(), w.Dropped()

	K := o.K
	B := max(1, min(o.Batch, (256<<20)/(T*K*8)))
	parts := o.Pool.Threads()
	tops := make([]*loss.TopK, parts)
	for i := range tops {
		tops[i] = loss.NewTopK(V, K)
	}
	in := make([]int32, B*T)
	win := make([]int32, T+1)
	ids := make([]int32, B*T*K)
	probs := make([]float32, B*T*K)
	rest := make([]float32, B*T)
	rest64 := make([]float64, B*T)
	errs := make([]error, parts)

	start, lastSync := time.Now(), time.Now()
	for lo := w.Done(); lo < h.Windows; lo += B {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("teacher dump stopped after %d of %d windows (run it again to continue): %w", w.Done(), h.Windows, err)
		}
		nb := min(B, h.Windows-lo)
		for b := range nb {
			data.Window(lo+b, win)
			copy(in[b*T:(b+1)*T], win[:T])
		}
		err := teacher.Forward(in[:nb*T], nb, T, func(logits []float32, first, rows int) error {
			o.Pool.For(parts, 1, func(p0, p1 int) {
				for p := p0; p < p1; p++ {
					r0, r1 := rows*p/parts, rows*(p+1)/parts
					for r := r0; r < r1; r++ {
						g := first + r
						var e error
						rest64[g], e = tops[p].Row(ids[g*K:(g+1)*K], probs[g*K:(g+1)*K], logits[r*V:(r+1)*V], o.Temperature)
						if e != nil && errs[p] == nil {
							errs[p] = fmt.Errorf("window %d position %d: %w", lo+g/T, g%T, e)
						}
					}
				}
			})
			return errors.Join(errs...)
		})
		if err != nil {
			return st, fmt.Errorf("teacher dump: the teacher: %w", err)
		}
		for i, r := range rest64[:nb*T] {
			rest[i] = float32(r)
		}
		for b := range nb {
			n := T * K
			if err := w.Append(ids[b*n:(b+1)*n], probs[b*n:(b+1)*n], rest[b*T:(b+1)*T]); err != nil {
				return st, err
			}
		}
		st.NewTokens += nb * T
		if time.Since(lastSync) >= o.SyncEvery {
			if err := w.Sync(); err != nil {
				return st, err
			}
			lastSync = time.Now()
		}
		if o.Progress != nil {
			o.Progress(w.Done(), h.Windows)
		}
	}
	st.Seconds = time.Since(start).Seconds()
	if st.Seconds > 0 {
		st.TokensPerS = float64(st.NewTokens) / st.Seconds
	}
	// Finish verifies every window before the store takes its path.
	kept, err := w.finish()
	if err != nil {
		return st, err
	}
	fileStats(&st, kept)
	return st, nil
}

// existing checks the complete store at path against st.Header and
// verifies every window, filling st. A store that is not intact is an
// error saying to remove it: Dump does not write over it.
func existing(st *DumpStats, path string) error {
	s, err := Open(path)
	if errors.Is(err, ErrFormat) || errors.Is(err, ErrIncomplete) {
		return fmt.Errorf("teacher dump: %w (remove %s to write the store again)", err, path)
	}
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Check(st.Header); err != nil {
		return err
	}
	kept, err := s.Verify()
	if err != nil {
		return fmt.Errorf("teacher dump: verifying the existing store: %w (remove %s to write the store again)", err, path)
	}
	st.Complete, st.Resumed = true, st.Header.Windows
	fileStats(st, kept)
	return nil
}

// fileStats fills the file's figures of a complete store whose top K keep
// meanKept of the teacher's mass.
func fileStats(st *DumpStats, meanKept float64) {
	st.MeanKept = meanKept
	st.FileBytes = st.Header.FileBytes()
	st.BytesPerToken = float64(st.FileBytes) / float64(max(st.Tokens, 1))
}
