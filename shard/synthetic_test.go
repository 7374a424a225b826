package shard

import (
	"errors"
	"math"
	"slices"
	"sort"
	"testing"
)

// chiSquare tests observed transition counts from each state against the
// stated probabilities. Cells expected below 5 are pooled; the pool joins
// the smallest kept cell if it is itself below 5. It returns the statistic,
// its degrees of freedom and the Wilson-Hilferty z score (normal under the
// null). Given the state, the transitions of a Markov chain are independent
// draws, so the statistic is chi-square.
func chiSquare(counts []map[int]float64, support func(s int) ([]int32, []float64)) (stat float64, dof int, z float64, outside int) {
	for s, obs := range counts {
		var n float64
		for _, o := range obs {
			n += o
		}
		if n == 0 {
			continue
		}
		ids, ps := support(s)
		type cell struct{ e, o float64 }
		var cells []cell
		var seen float64
		for j, id := range ids {
			o := obs[int(id)]
			seen += o
			cells = append(cells, cell{n * ps[j], o})
		}
		if seen != n {
			outside += int(n - seen)
		}
		sort.Slice(cells, func(i, j int) bool { return cells[i].e > cells[j].e })
		var kept []cell
		var pool cell
		for _, c := range cells {
			if c.e >= 5 {
				kept = append(kept, c)
			} else {
				pool.e, pool.o = pool.e+c.e, pool.o+c.o
			}
		}
		if pool.e > 0 {
			if pool.e < 5 && len(kept) > 0 {
				kept[len(kept)-1].e += pool.e
				kept[len(kept)-1].o += pool.o
			} else {
				kept = append(kept, pool)
			}
		}
		if len(kept) < 2 {
			continue
		}
		for _, c := range kept {
			stat += (c.o - c.e) * (c.o - c.e) / c.e
		}
		dof += len(kept) - 1
	}
	k := float64(dof)
	z = (math.Cbrt(stat/k) - (1 - 2/(9*k))) / math.Sqrt(2/(9*k))
	return stat, dof, z, outside
}

// transitions counts, over the whole corpus, the token that follows each
// state (class of x[t-2], x[t-1]).
func transitions(d *Dataset) []map[int]float64 {
	sy := d.syn
	counts := make([]map[int]float64, sy.M*sy.V)
	for i := range counts {
		counts[i] = map[int]float64{}
	}
	for i := 2; i < d.NumTokens(); i++ {
		s := int(sy.class[d.tok(i-2)])*sy.V + d.tok(i-1)
		counts[s][d.tok(i)]++
	}
	return counts
}

// TestSyntheticChiSquare: at a fixed seed the empirical next-token
// frequencies of the default source match its stated conditionals; the same
// statistic rejects a source whose rows are permuted, so the test can fail.
func TestSyntheticChiSquare(t *testing.T) {
	d, err := Open(Options{Ctx: 128, Seed: 2024})
	if err != nil {
		t.Fatal(err)
	}
	sy := d.syn
	S := sy.S
	counts := transitions(d)
	stated := func(s int) ([]int32, []float64) { return sy.succ[s*S : (s+1)*S], sy.prob[s*S : (s+1)*S] }
	stat, dof, z, outside := chiSquare(counts, stated)
	t.Logf("chi-square %.1f on %d degrees of freedom, z = %.2f", stat, dof, z)
	if outside != 0 {
		t.Errorf("%d transitions to tokens outside the stated support", outside)
	}
	if dof < 500 {
		t.Errorf("chi-square on %d degrees of freedom; want at least 500", dof)
	}
	if z > 4 || z < -4 {
		t.Errorf("chi-square z = %.2f; want |z| <= 4", z)
	}
	// Power: the same counts against rows whose probabilities are rotated.
	wrong := func(s int) ([]int32, []float64) {
		p := slices.Clone(sy.prob[s*S : (s+1)*S])
		p = append(p[1:], p[0])
		return sy.succ[s*S : (s+1)*S], p
	}
	if _, _, z, _ := chiSquare(counts, wrong); z < 20 {
		t.Errorf("chi-square z against rotated rows = %.2f; want > 20 (the test has no power)", z)
	}
}

// TestSyntheticStationary: the state frequencies of the corpus match the
// stationary distribution that the first rows of windows are built from.
func TestSyntheticStationary(t *testing.T) {
	d, err := Open(Options{Ctx: 64, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	sy := d.syn
	freq := make([]float64, sy.M*sy.V)
	n := d.NumTokens() - 1
	for i := 1; i <= n; i++ {
		freq[int(sy.class[d.tok(i-1)])*sy.V+d.tok(i)] += 1 / float64(n)
	}
	var worst float64
	for s, p := range sy.pi {
		// 6 standard deviations of a frequency (with some room for the
		// chain's correlation).
		sd := math.Sqrt(p * (1 - p) / float64(n))
		worst = max(worst, math.Abs(freq[s]-p)/(sd+1e-12))
	}
	if worst > 8 {
		t.Errorf("state frequency off the stationary distribution by %.1f standard deviations; want <= 8", worst)
	}
}

// TestTruthRows: every row sums to 1, has distinct ids in range, and gives
// the token that actually follows a positive probability; rows t >= 1 are
// the transition rows of the state.
func TestTruthRows(t *testing.T) {
	d, err := Open(Options{Ctx: 32, Seed: 5, Tokens: 20000, ValFraction: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	T, K := d.Ctx(), d.TruthK()
	if K < d.syn.S || K > d.syn.S*d.syn.M {
		t.Fatalf("TruthK() = %d; want in [S, S*M] = [%d, %d]", K, d.syn.S, d.syn.S*d.syn.M)
	}
	win := make([]int32, T+1)
	ids := make([]int32, T*K)
	probs := make([]float32, T*K)
	for _, id := range d.AllWindows() {
		d.Window(id, win)
		d.Truth(id, ids, probs)
		for tt := range T {
			rowIDs, rowP := ids[tt*K:(tt+1)*K], probs[tt*K:(tt+1)*K]
			var sum float64
			var pNext float32
			seen := map[int32]bool{}
			for j, x := range rowIDs {
				if x < 0 || int(x) >= d.Vocab() || seen[x] || rowP[j] < 0 {
					t.Fatalf("window %d row %d: entry %d = (%d, %g); want a distinct id in [0, %d), p >= 0", id, tt, j, x, rowP[j], d.Vocab())
				}
				seen[x] = true
				sum += float64(rowP[j])
				if x == win[tt+1] {
					pNext = rowP[j]
				}
			}
			if math.Abs(sum-1) > 1e-5 {
				t.Fatalf("window %d row %d sums to %v; want 1", id, tt, sum)
			}
			if pNext <= 0 {
				t.Fatalf("window %d row %d: the next token %d has probability %g; want > 0", id, tt, win[tt+1], pNext)
			}
		}
	}
}

// floorFromRows is the entropy floor computed from the Truth rows.
func floorFromRows(d *Dataset, windows []int) float64 {
	T, K := d.Ctx(), d.TruthK()
	ids := make([]int32, T*K)
	probs := make([]float32, T*K)
	var h float64
	for _, id := range windows {
		d.Truth(id, ids, probs)
		for _, p := range probs {
			if p > 0 {
				h -= float64(p) * math.Log(float64(p))
			}
		}
	}
	return h / float64(len(windows)*T)
}

func TestEntropyFloor(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want float64 // exact, or NaN to compare with the rows only
	}{
		// A single cycle through the vocabulary: every next token is
		// certain, except the first of a window... which is certain too.
		{"deterministic cycle", Options{Ctx: 16, Classes: 1, Successors: 1, Tokens: 5000}, 0},
		// Classes > 1 but one successor: rows t >= 1 are certain, row 0 is
		// a mixture over the classes; the floor is H(row 0)/T exactly.
		{"one successor", Options{Ctx: 16, Classes: 4, Successors: 1, Tokens: 5000}, math.NaN()},
		{"default", Options{Ctx: 128, ValFraction: 0.05}, math.NaN()},
		{"vocab 256", Options{Ctx: 64, Vocab: 256, Tokens: 100000}, math.NaN()},
	}
	for _, tt := range tests {
		d, err := Open(tt.o)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		ws := d.AllWindows()
		got := d.EntropyFloor(ws)
		rows := floorFromRows(d, ws)
		if math.Abs(got-rows) > 1e-5 {
			t.Errorf("%s: EntropyFloor(all) = %.7f; want %.7f from the Truth rows", tt.name, got, rows)
		}
		if !math.IsNaN(tt.want) && got != tt.want {
			t.Errorf("%s: EntropyFloor(all) = %v; want exactly %v", tt.name, got, tt.want)
		}
		st, _ := d.Stats()
		if tt.name == "deterministic cycle" {
			if st.Floor != 0 || st.Bigram != 0 || math.Abs(st.Unigram-math.Log(float64(d.Vocab()))) > 1e-9 {
				t.Errorf("%s: Stats() = %+v; want floor 0, bigram 0, unigram ln %d", tt.name, st, d.Vocab())
			}
		}
		if tt.name == "one successor" {
			var h0 float64
			for _, id := range ws {
				h0 += d.syn.h1[d.tok(id*d.Ctx())]
			}
			want := h0 / float64(len(ws)*d.Ctx())
			if math.Abs(got-want) > 1e-12 || st.Floor != 0 {
				t.Errorf("%s: EntropyFloor = %v, Stats().Floor = %v; want %v and 0", tt.name, got, st.Floor, want)
			}
		}
		// With T >= 64 the windows' floor is near the entropy rate: only
		// the first row of a window sees less.
		if d.Ctx() >= 64 && math.Abs(got-st.Floor) > 0.05 {
			t.Errorf("%s: EntropyFloor(all) = %.4f; want near the entropy rate %.4f", tt.name, got, st.Floor)
		}
	}
	d, _ := Open(Options{Ctx: 8, Classes: 1, Tokens: 50000})
	if st, _ := d.Stats(); math.Abs(st.Bigram-st.Floor) > 1e-12 {
		t.Errorf("first-order source: bigram %v, floor %v; want equal", st.Bigram, st.Floor)
	}
}

// TestBigramGap fits the best bigram model on the training windows' targets
// and measures it on the held-out ones: the source needs context, its loss
// is at least 0.3 nats/token above the entropy floor.
func TestBigramGap(t *testing.T) {
	d, err := Open(Options{Ctx: 128, ValFraction: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	V, T := d.Vocab(), d.Ctx()
	counts := make([]float64, V*V)
	rowSum := make([]float64, V)
	win := make([]int32, T+1)
	for _, id := range d.TrainWindows() {
		d.Window(id, win)
		for i := range T {
			counts[int(win[i])*V+int(win[i+1])]++
			rowSum[win[i]]++
		}
	}
	// Add-one-over-V smoothing, so an unseen pair is not infinitely bad.
	var loss float64
	val := d.ValWindows()
	for _, id := range val {
		d.Window(id, win)
		for i := range T {
			a, b := int(win[i]), int(win[i+1])
			loss -= math.Log((counts[a*V+b] + 1.0/float64(V)) / (rowSum[a] + 1))
		}
	}
	loss /= float64(len(val) * T)
	floor := d.EntropyFloor(val)
	st, _ := d.Stats()
	t.Logf("default synthetic source (vocab %d, classes %d, successors %d, %d tokens, K %d):",
		V, d.syn.M, d.syn.S, d.NumTokens(), d.TruthK())
	t.Logf("  held-out: bigram loss %.4f, entropy floor %.4f, gap %.4f nats/token", loss, floor, loss-floor)
	t.Logf("  stationary: bigram %.4f, entropy rate %.4f, gap %.4f, unigram %.4f", st.Bigram, st.Floor, st.Bigram-st.Floor, st.Unigram)
	if loss-floor < 0.3 {
		t.Errorf("held-out bigram loss %.4f - floor %.4f = %.4f; want >= 0.3", loss, floor, loss-floor)
	}
	if st.Bigram-st.Floor < 0.3 {
		t.Errorf("stationary bigram %.4f - entropy rate %.4f; want a gap >= 0.3", st.Bigram, st.Floor)
	}
	if math.Abs(loss-st.Bigram) > 0.05 {
		t.Errorf("held-out bigram loss %.4f; want near the exact %.4f", loss, st.Bigram)
	}
}

// With modes, every context's distribution puts mass 1/G on each of G
// disjoint regions of the vocabulary (token t in region t mod G).
func TestSyntheticModes(t *testing.T) {
	d, err := Open(Options{Source: "synthetic:modes=2", Ctx: 8, Tokens: 1 << 14, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	K := d.TruthK()
	ids, p := make([]int32, 9*K), make([]float32, 9*K)
	for w := 0; w < 20; w++ {
		d.Truth(w, ids[:8*K], p[:8*K])
		for pos := 1; pos < 8; pos++ { // position 0 sees one token only
			var mass [2]float64
			for j := pos * K; j < (pos+1)*K; j++ {
				mass[ids[j]%2] += float64(p[j])
			}
			if math.Abs(mass[0]-0.5) > 1e-6 || math.Abs(mass[1]-0.5) > 1e-6 {
				t.Fatalf("window %d position %d: mass by region %v; want 0.5 each", w, pos, mass)
			}
		}
	}
	one, err := Open(Options{Source: "synthetic", Ctx: 8, Tokens: 1 << 14, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	st2, _ := d.Stats()
	st1, _ := one.Stats()
	if !(st2.Floor > 0) || st2.Floor == st1.Floor {
		t.Errorf("entropy floors: modes=2 %v, one mode %v", st2.Floor, st1.Floor)
	}
	for _, bad := range []string{"synthetic:modes=3", "synthetic:modes=x", "synthetic:colour=2"} {
		if _, err := Open(Options{Source: bad, Ctx: 8}); !errors.Is(err, ErrOptions) {
			t.Errorf("Open(%q) = %v; want ErrOptions", bad, err)
		}
	}
}

// TruthOf a window's own tokens is its Truth.
func TestTruthOfAWindowIsItsTruth(t *testing.T) {
	d, err := Open(Options{Source: "synthetic", Ctx: 16, Tokens: 4096, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	K := d.TruthK()
	w := make([]int32, 17)
	a, pa := make([]int32, 16*K), make([]float32, 16*K)
	b, pb := make([]int32, 16*K), make([]float32, 16*K)
	for id := 0; id < 10; id++ {
		d.Window(id, w)
		d.Truth(id, a, pa)
		d.TruthOf(w[:16], b, pb)
		if !slices.Equal(a, b) || !slices.Equal(pa, pb) {
			t.Fatalf("window %d: TruthOf its tokens differs from Truth", id)
		}
	}
}
