package teacherstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// randomWindow is a window of distinct ids and probabilities summing to
// 1 - rest in every row.
func randomWindow(rng *rand.Rand, h Header) (ids []int32, probs, rest []float32) {
	T, K := h.Ctx, h.K
	ids, probs, rest = make([]int32, T*K), make([]float32, T*K), make([]float32, T)
	for t := range T {
		perm := rng.Perm(h.Vocab)
		r := rng.Float64() * 0.3
		rest[t] = float32(r)
		var sum float64
		raw := make([]float64, K)
		for i := range K {
			raw[i] = rng.ExpFloat64()
			sum += raw[i]
		}
		for i := range K {
			ids[t*K+i] = int32(perm[i])
			probs[t*K+i] = float32(raw[i] / sum * (1 - r))
		}
	}
	return ids, probs, rest
}

func writeStore(t *testing.T, path string, h Header, seed uint64) (ids [][]int32, probs, rest [][]float32) {
	t.Helper()
	w, err := Create(path, h)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for range h.Windows {
		i, p, r := randomWindow(rng, h)
		if err := w.Append(i, p, r); err != nil {
			t.Fatal(err)
		}
		ids, probs, rest = append(ids, i), append(probs, p), append(rest, r)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	return ids, probs, rest
}

func TestRoundTrip(t *testing.T) {
	for _, dt := range []Dtype{Float32, Float16} {
		t.Run(dt.String(), func(t *testing.T) {
			h := testHeader()
			h.Dtype = dt
			path := filepath.Join(t.TempDir(), "s.topk")
			ids, probs, rest := writeStore(t, path, h, 1)
			if _, err := os.Stat(PartialPath(path)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the partial file is still there after Finish: %v", err)
			}
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Header(); got != h {
				t.Fatalf("Header() = %+v; want %+v", got, h)
			}
			T, K := h.Ctx, h.K
			gi, gp, gr := make([]int32, T*K), make([]float32, T*K), make([]float32, T)
			for w := range h.Windows {
				if err := s.Rows(w, gi, gp, gr); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(gi, ids[w]) || !slices.Equal(gr, rest[w]) {
					t.Fatalf("window %d: ids %v rest %v; want %v %v", w, gi, gr, ids[w], rest[w])
				}
				for i := range gp {
					tol := 0.0
					if dt == Float16 {
						tol = 1.5e-3 * float64(probs[w][i])
					}
					if d := math.Abs(float64(gp[i] - probs[w][i])); d > tol {
						t.Fatalf("window %d probs[%d] = %v; want %v", w, i, gp[i], probs[w][i])
					}
				}
				// Every row sums to the mass the teacher's top k held.
				for r := range T {
					var sum float64
					for _, p := range gp[r*K : (r+1)*K] {
						sum += float64(p)
					}
					if d := math.Abs(sum - (1 - float64(gr[r]))); d > 1e-6 {
						t.Fatalf("window %d row %d sums to %v; want 1 - rest = %v", w, r, sum, 1-gr[r])
					}
				}
			}
			// Targets lays windows out as engine's batch.
			wins := []int32{3, 0, 24}
			ti, tp := make([]int32, len(wins)*T*K), make([]float32, len(wins)*T*K)
			if err := s.Targets(ti, tp, wins, T, 0); err != nil {
				t.Fatal(err)
			}
			for b, w := range wins {
				if !slices.Equal(ti[b*T*K:(b+1)*T*K], ids[w]) {
					t.Fatalf("Targets: window %d (batch row %d) ids differ", w, b)
				}
			}
			// Cut to the top 2 of each row: its first two entries.
			ci, cp := make([]int32, len(wins)*T*2), make([]float32, len(wins)*T*2)
			if err := s.Targets(ci, cp, wins, T, 2); err != nil {
				t.Fatal(err)
			}
			for b := range wins {
				for r := range T {
					for i := range 2 {
						if ci[(b*T+r)*2+i] != ti[(b*T+r)*K+i] || cp[(b*T+r)*2+i] != tp[(b*T+r)*K+i] {
							t.Fatalf("Targets with k = 2: window %d row %d entry %d differs from the full row's", wins[b], r, i)
						}
					}
				}
			}
			if kept, err := s.Verify(); err != nil || kept < 0.7 || kept > 1 {
				t.Fatalf("Verify() = %v, %v", kept, err)
			}
		})
	}
}

// A store stopped before its end is continued where it stopped, and ends
// bit-identical to one written in one go.
func TestResume(t *testing.T) {
	h := testHeader()
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.topk")
	writeStore(t, whole, h, 7)

	path := filepath.Join(dir, "resumed.topk")
	rng := rand.New(rand.NewPCG(7, 1))
	w, err := Create(path, h)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := w.Append(randomWindow(rng, h)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	// Two more windows written but never synced: a crash loses them.
	for range 2 {
		if err := w.Append(randomWindow(rng, h)); err != nil {
			t.Fatal(err)
		}
	}
	w.f.Close() // the crash
	if _, err := Open(PartialPath(path)); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Open(partial) error = %v; want ErrIncomplete", err)
	}
	if err := w.Finish(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Finish before the last window: %v; want ErrIncomplete", err)
	}

	other := h
	other.K, other.Temperature = 4, 2
	if _, err := Create(path, other); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "k: store 3, want 4") || !strings.Contains(err.Error(), "temperature") {
		t.Fatalf("Create over a partial store of another header: %v; want ErrMismatch naming k and temperature", err)
	}

	w, err = Create(path, h)
	if err != nil {
		t.Fatal(err)
	}
	if w.Done() != 10 {
		t.Fatalf("Done() after resuming = %d; want 10 (the synced windows)", w.Done())
	}
	rng = rand.New(rand.NewPCG(7, 1))
	for range 10 {
		randomWindow(rng, h) // the windows already in
	}
	for w.Done() < h.Windows {
		if err := w.Append(randomWindow(rng, h)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(whole)
	b, _ := os.ReadFile(path)
	if !bytes.Equal(a, b) {
		t.Fatal("the resumed store differs from the one written in one go")
	}
	if _, err := Create(path, h); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over a complete store: %v; want ErrExists", err)
	}
}

func TestAppendRefusesBadRows(t *testing.T) {
	h := testHeader()
	w, err := Create(filepath.Join(t.TempDir(), "s.topk"), h)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	for name, mod := range map[string]func([]int32, []float32, []float32){
		"id":   func(i []int32, p, r []float32) { i[5] = 64 },
		"neg":  func(i []int32, p, r []float32) { i[0] = -1 },
		"prob": func(i []int32, p, r []float32) { p[2] = float32(math.NaN()) },
		"rest": func(i []int32, p, r []float32) { r[1] = 1.5 },
	} {
		i, p, r := randomWindow(rng, h)
		mod(i, p, r)
		if err := w.Append(i, p, r); err == nil {
			t.Errorf("Append with a bad %s: no error", name)
		}
	}
	if w.Done() != 0 {
		t.Fatalf("Done() = %d after refused windows; want 0", w.Done())
	}
}

// Damage anywhere is refused with an error that says what is wrong.
func TestOpenRefusesDamage(t *testing.T) {
	h := testHeader()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.topk")
	writeStore(t, good, h, 2)
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
		want string
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, "file length"},
		{"longer", func(b []byte) []byte { return append(b, 0) }, "file length"},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, "magic"},
		{"version", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[offVersion:], 2); return b }, "format version 2"},
		{"header byte", func(b []byte) []byte { b[offK] ^= 1; return b }, "header checksum"},
		{"short", func(b []byte) []byte { return b[:100] }, "shorter than its"},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, tc.mod(slices.Clone(orig)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Open error = %v; want ErrFormat saying %q", tc.name, err, tc.want)
		}
	}
	// A damaged record: Open (which reads no record) succeeds, Rows of that
	// window and Verify refuse it, other windows still read.
	b := slices.Clone(orig)
	b[h.dataOffset()+5*h.RecordBytes()+7] ^= 0x10
	path := filepath.Join(dir, "record")
	os.WriteFile(path, b, 0o644)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	T, K := h.Ctx, h.K
	ids, probs := make([]int32, T*K), make([]float32, T*K)
	if err := s.Rows(5, ids, probs, nil); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "window 5") {
		t.Errorf("Rows of a damaged window: %v; want ErrFormat naming window 5", err)
	}
	if err := s.Rows(4, ids, probs, nil); err != nil {
		t.Errorf("Rows of an intact window: %v", err)
	}
	if _, err := s.Verify(); !errors.Is(err, ErrFormat) {
		t.Errorf("Verify of a damaged store: %v", err)
	}
}

// Check names every field that differs, and ignores seed and held-out
// fraction.
func TestCheckNamesEveryField(t *testing.T) {
	h := testHeader()
	path := filepath.Join(t.TempDir(), "s.topk")
	writeStore(t, path, h, 3)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	same := h
	same.Data.Seed, same.Data.ValFraction = 42, 0.05
	if err := s.Check(same); err != nil {
		t.Fatalf("Check with another seed and val_fraction: %v", err)
	}
	if err := s.Check(Header{}); err != nil {
		t.Fatalf("Check of a zero header: %v", err)
	}
	bad := Header{TeacherSHA256: strings.Repeat("1", 64), Data: h.Data, Vocab: 65, Ctx: 8, K: 4, Temperature: 2}
	bad.Data.SHA256 = strings.Repeat("cd", 32)
	err = s.Check(bad)
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("Check error = %v; want ErrMismatch", err)
	}
	for _, field := range []string{"teacher_sha256", "data (sha256", "vocab: store 64, want 65", "ctx: store 4, want 8", "k: store 3, want 4", "temperature: store 1, want 2"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Check error %q does not name %q", err, field)
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := testHeader()
	h.Dtype, h.Temperature = Float16, 0.7
	got, done, err := decodeHeader(h.encode(11))
	if err != nil || got != h || done != 11 {
		t.Fatalf("decodeHeader(encode(h)) = %+v, %d, %v; want %+v, 11", got, done, err, h)
	}
	for _, mod := range []func(*Header){
		func(h *Header) { h.K = 0 },
		func(h *Header) { h.K = 65 },
		func(h *Header) { h.Ctx = 5 },
		func(h *Header) { h.Windows = 24 },
		func(h *Header) { h.Temperature = math.Inf(1) },
		func(h *Header) { h.Dtype = 3 },
		func(h *Header) { h.Data.Kind = "video" },
		func(h *Header) { h.Data.Seed = 1 },
		func(h *Header) { h.Data.Vocab = 65 },
		func(h *Header) { h.TeacherSHA256 = "abc" },
	} {
		b := h
		mod(&b)
		if err := b.Validate(); !errors.Is(err, ErrFormat) {
			t.Errorf("Validate(%+v) = %v; want ErrFormat", b, err)
		}
	}
}

// FuzzDecodeHeader: any bytes decode to an error or to a valid header that
// encodes back to the same bytes.
func FuzzDecodeHeader(f *testing.F) {
	h := testHeader()
	f.Add(h.encode(0))
	h.Dtype, h.Vocab, h.K = Float16, 70000, 70000
	f.Add(h.encode(3))
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Most mutations break the checksum: fix it up half the time so
		// the field checks are reached.
		if len(b) >= HeaderSize && len(b)%2 == 0 {
			b = slices.Clone(b[:HeaderSize])
			binary.LittleEndian.PutUint32(b[offCRC:], 0)
			binary.LittleEndian.PutUint32(b[offCRC:], crc32Castagnoli(b))
		}
		h, done, err := decodeHeader(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("decoded an invalid header: %v", err)
		}
		if !bytes.Equal(h.encode(done), b[:HeaderSize]) {
			t.Fatalf("header %+v does not encode back to its bytes", h)
		}
	})
}

// A header travels in a job's welcome: msgpack and JSON give it back whole.
func TestHeaderOnTheWire(t *testing.T) {
	h := testHeader()
	h.Dtype = Float16
	b, err := msgpack.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var got Header
	if err := msgpack.Unmarshal(b, &got); err != nil || got != h {
		t.Fatalf("msgpack round trip: %+v, %v; want %+v", got, err, h)
	}
	j, _ := json.Marshal(h)
	got = Header{}
	if err := json.Unmarshal(j, &got); err != nil || got != h || !strings.Contains(string(j), `"teacher_sha256"`) {
		t.Fatalf("JSON round trip: %s -> %+v, %v", j, got, err)
	}
}

// Many goroutines read one store at once (in-process workers share it).
func TestConcurrentReaders(t *testing.T) {
	h := testHeader()
	h.Dtype = Float16
	path := filepath.Join(t.TempDir(), "s.topk")
	writeStore(t, path, h, 4)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	T, K := h.Ctx, h.K
	want := make([]float32, h.Windows*T*K)
	wantIDs := make([]int32, h.Windows*T*K)
	all := make([]int32, h.Windows)
	for i := range all {
		all[i] = int32(i)
	}
	if err := s.Targets(wantIDs, want, all, T, 0); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			ids, probs := make([]int32, T*K), make([]float32, T*K)
			for i := range 200 {
				w := (g*7 + i) % h.Windows
				if err := s.Targets(ids, probs, []int32{int32(w)}, T, 0); err != nil {
					errs <- err
					return
				}
				if !slices.Equal(ids, wantIDs[w*T*K:(w+1)*T*K]) || !slices.Equal(probs, want[w*T*K:(w+1)*T*K]) {
					errs <- fmt.Errorf("goroutine %d read window %d differently", g, w)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
