package lm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
)

func TestSaveLoadBitIdentical(t *testing.T) {
	m := newMicro(t, micro, 1, 42)
	opt, err := NewAdamW(m.Layout(), DefaultAdamWOptions(), kernels.NewPool(1))
	if err != nil {
		t.Fatal(err)
	}
	r := NewRNG(1)
	for i := range opt.State.M {
		opt.State.M[i], opt.State.V[i] = float32(r.NormFloat64()), float32(r.Float64())
	}
	opt.State.T = 17
	m.Params[5] = float32(math.Copysign(0, -1)) // -0 survives
	m.Params[6] = math.Float32frombits(1)       // a denormal survives
	st := &TrainerState{Step: 17, RNG: math.MaxUint64 - 3, Data: json.RawMessage(`{"epoch":2,"pos":40}`), Adam: &opt.State}
	dir := t.TempDir()
	if err := SaveCheckpoint(dir, m, st); err != nil {
		t.Fatal(err)
	}
	got, gst, err := LoadCheckpoint(dir, kernels.NewPool(1))
	if err != nil {
		t.Fatalf("LoadCheckpoint(saved) = %v", err)
	}
	if got.Config != m.Config {
		t.Errorf("config = %+v; want %+v", got.Config, m.Config)
	}
	bits := func(v []float32) []uint32 {
		u := make([]uint32, len(v))
		for i, x := range v {
			u[i] = math.Float32bits(x)
		}
		return u
	}
	if !slices.Equal(bits(got.Params), bits(m.Params)) {
		t.Error("loaded parameters differ from the saved ones")
	}
	if gst == nil || gst.Step != 17 || gst.RNG != st.RNG || string(gst.Data) != string(st.Data) {
		t.Fatalf("trainer state = %+v; want %+v", gst, st)
	}
	if gst.Adam == nil || gst.Adam.T != 17 || !slices.Equal(bits(gst.Adam.M), bits(opt.State.M)) || !slices.Equal(bits(gst.Adam.V), bits(opt.State.V)) {
		t.Error("AdamW state differs after the round trip")
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{ConfigFile, ModelFile, OptimizerFile, TrainerStateFile}; !slices.Equal(names, want) {
		t.Errorf("checkpoint folder holds %v; want %v", names, want)
	}
	if err := SaveCheckpoint(t.TempDir(), m, &TrainerState{Data: json.RawMessage(`{"epoch":`)}); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("SaveCheckpoint(invalid data JSON) = %v; want ErrCheckpoint", err)
	}
	// Without trainer state only the Hugging Face files are written.
	dir2 := t.TempDir()
	if err := SaveCheckpoint(dir2, m, nil); err != nil {
		t.Fatal(err)
	}
	if _, st2, err := LoadCheckpoint(dir2, kernels.NewPool(1)); err != nil || st2 != nil {
		t.Errorf("LoadCheckpoint(no state) = %v, %v; want nil state, nil error", st2, err)
	}
}

// TestConv1DTransposeAtBoundary: the file holds c_attn as [C, 3C] with
// file[i][o] = memory[o][i], and the golden checkpoint saved again is
// byte-identical tensor by tensor.
func TestConv1DTransposeAtBoundary(t *testing.T) {
	m, _, err := LoadCheckpoint(goldenDir, kernels.NewPool(1))
	if err != nil {
		t.Fatalf("LoadCheckpoint(golden) = %v", err)
	}
	dir := t.TempDir()
	if err := SaveCheckpoint(dir, m, nil); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(goldenDir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(filepath.Join(dir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	fo, err := parseSafetensors(orig)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := parseSafetensors(saved)
	if err != nil {
		t.Fatal(err)
	}
	for _, ten := range m.layout {
		a, b := fo.tensors[ten.Name], fs.tensors[ten.Name]
		if !slices.Equal(a.shape, b.shape) || string(a.data) != string(b.data) {
			t.Errorf("%s: saved %v differs from the golden file's %v", ten.Name, b.shape, a.shape)
		}
	}
	ten, _ := m.Tensor("h.0.attn.c_attn.weight")
	mem := ten.View(m.Params)
	file := fo.tensors[ten.Name]
	C := m.Config.NEmbd
	for _, io := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {C - 1, 3*C - 1}, {5, 70}} {
		i, o := io[0], io[1]
		f := math.Float32frombits(binary.LittleEndian.Uint32(file.data[4*(i*3*C+o):]))
		if mem[o*C+i] != f {
			t.Errorf("c_attn memory[%d][%d] = %g; want file[%d][%d] = %g", o, i, mem[o*C+i], i, o, f)
		}
	}
}

// foreign writes a checkpoint folder the way another tool might: keys
// shuffled, a "transformer." prefix, the causal-mask buffers h.N.attn.bias
// and lm_head.weight as extra keys.
func TestLoadForeignFolder(t *testing.T) {
	src, _, err := LoadCheckpoint(goldenDir, kernels.NewPool(1))
	if err != nil {
		t.Fatal(err)
	}
	ts := layoutTensors(src.layout, src.Params, "transformer.")
	slices.Reverse(ts)
	ts = append(ts, stOut{name: "transformer.h.0.attn.bias", shape: []int{1, 1, 8, 8}, data: make([]float32, 64)},
		stOut{name: "lm_head.weight", shape: []int{64, 32}, data: make([]float32, 64*32)})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ModelFile), encodeSafetensors(ts, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(goldenDir, ConfigFile))
	os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644)
	m, _, err := LoadCheckpoint(dir, kernels.NewPool(1))
	if err != nil {
		t.Fatalf("LoadCheckpoint(foreign) = %v", err)
	}
	if !slices.Equal(m.Params, src.Params) {
		t.Error("foreign folder loaded different parameters")
	}
}

// header builds a safetensors file from a raw JSON header and data bytes.
func header(js string, data []byte) []byte {
	b := make([]byte, 8, 8+len(js)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(js)))
	return append(append(b, js...), data...)
}

func TestParseSafetensorsRejects(t *testing.T) {
	good := encodeSafetensors([]stOut{{name: "a", shape: []int{2}, data: []float32{1, 2}}}, nil)
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "shorter than"},
		{"header length larger than file", header(`{}`, nil)[:9], "larger than"},
		{"header length lies", func() []byte { b := append([]byte(nil), good...); binary.LittleEndian.PutUint64(b, 1<<40); return b }(), "larger than"},
		{"truncated data", good[:len(good)-1], "outside"},
		{"bad json", header(`{"a":`, nil), "header"},
		{"unknown dtype", header(`{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "unknown dtype"},
		{"offsets past end", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 8)), "outside"},
		{"offsets reversed", header(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}`, make([]byte, 8)), "outside"},
		{"size disagrees with shape", header(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), "needs"},
		{"overlap", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), "overlap"},
		{"same range twice", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "overlap"},
		{"negative dim", header(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4)), "dimension"},
		{"huge shape", header(`{"a":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,4]}}`, make([]byte, 4)), "needs more"},
		{"one offset", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, make([]byte, 4)), "data_offsets"},
		{"no shape", header(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), "no shape"},
	} {
		_, err := parseSafetensors(c.file)
		if !errors.Is(err, ErrSafetensors) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: parseSafetensors = %v; want ErrSafetensors mentioning %q", c.name, err, c.want)
		}
	}
	if _, err := parseSafetensors(good); err != nil {
		t.Errorf("parseSafetensors(good) = %v", err)
	}
}

func TestLoadCheckpointRejects(t *testing.T) {
	src := newMicro(t, micro, 1, 1)
	write := func(t *testing.T, ts []stOut, cfg string) string {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, ModelFile), encodeSafetensors(ts, nil), 0o644)
		if cfg == "" {
			cfg = `{"model_type":"gpt2","vocab_size":11,"n_positions":6,"n_embd":8,"n_layer":2,"n_head":2}`
		}
		os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o644)
		return dir
	}
	base := func() []stOut { return layoutTensors(src.layout, src.Params, "") }
	for _, c := range []struct {
		name string
		dir  func(t *testing.T) string
		want error
		msg  string
	}{
		{"wrong shape", func(t *testing.T) string {
			ts := base()
			ts[0].shape = []int{8, 11}
			return write(t, ts, "")
		}, ErrShape, "wte.weight"},
		{"missing tensor", func(t *testing.T) string { return write(t, base()[1:], "") }, ErrMissingTensor, "wte.weight"},
		{"a layer the config does not have", func(t *testing.T) string {
			return write(t, base(), `{"model_type":"gpt2","vocab_size":11,"n_positions":6,"n_embd":8,"n_layer":1,"n_head":2}`)
		}, ErrShape, "h.1."},
		{"F16 tensor", func(t *testing.T) string {
			dir := t.TempDir()
			b := header(`{"wte.weight":{"dtype":"F16","shape":[11,8],"data_offsets":[0,176]}}`, make([]byte, 8000))
			os.WriteFile(filepath.Join(dir, ModelFile), b, 0o644)
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"vocab_size":11,"n_positions":6,"n_embd":8,"n_layer":2,"n_head":2}`), 0o644)
			return dir
		}, ErrDtype, "F16"},
		{"truncated file", func(t *testing.T) string {
			dir := write(t, base(), "")
			p := filepath.Join(dir, ModelFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-10], 0o644)
			return dir
		}, ErrSafetensors, "outside"},
		{"config: other activation", func(t *testing.T) string {
			return write(t, base(), `{"vocab_size":11,"n_positions":6,"n_embd":8,"n_layer":2,"n_head":2,"activation_function":"relu"}`)
		}, ErrCheckpoint, "activation_function"},
		{"config: epsilon", func(t *testing.T) string {
			return write(t, base(), `{"vocab_size":11,"n_positions":6,"n_embd":8,"n_layer":2,"n_head":2,"layer_norm_epsilon":1e-6}`)
		}, ErrCheckpoint, "layer_norm_epsilon"},
		{"config: untied", func(t *testing.T) string {
			return write(t, base(), `{"vocab_size":11,"n_positions":6,"n_embd":8,"n_layer":2,"n_head":2,"tie_word_embeddings":false}`)
		}, ErrCheckpoint, "tie_word_embeddings"},
		{"config: no n_head", func(t *testing.T) string {
			return write(t, base(), `{"vocab_size":11,"n_positions":6,"n_embd":8,"n_layer":2}`)
		}, ErrCheckpoint, "n_head"},
		{"config larger than the weights", func(t *testing.T) string {
			return write(t, base(), `{"vocab_size":50000,"n_positions":1024,"n_embd":768,"n_layer":12,"n_head":12}`)
		}, ErrCheckpoint, "need"},
		{"config: heads do not divide", func(t *testing.T) string {
			return write(t, base(), `{"vocab_size":11,"n_positions":6,"n_embd":8,"n_layer":2,"n_head":3}`)
		}, ErrConfig, "n_head"},
		{"model changed after trainer state", func(t *testing.T) string {
			dir := t.TempDir()
			if err := SaveCheckpoint(dir, src, &TrainerState{Step: 1}); err != nil {
				t.Fatal(err)
			}
			other := newMicro(t, micro, 1, 2)
			os.WriteFile(filepath.Join(dir, ModelFile), encodeSafetensors(layoutTensors(other.layout, other.Params, ""), nil), 0o644)
			return dir
		}, ErrCheckpoint, "digest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := LoadCheckpoint(c.dir(t), kernels.NewPool(1))
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("LoadCheckpoint = %v; want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
}

// FuzzLoadSafetensors: no input makes the parser or the layout reader panic,
// and whatever parses has every tensor inside the data.
func FuzzLoadSafetensors(f *testing.F) {
	m, err := New(Config{Vocab: 3, NEmbd: 2, NLayer: 1, NHead: 1, Ctx: 2}, kernels.NewPool(1))
	if err != nil {
		f.Fatal(err)
	}
	m.Init(1)
	f.Add(encodeSafetensors(layoutTensors(m.layout, m.Params, ""), map[string]string{"format": "pt"}))
	f.Add(header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add(header(`{"wte.weight":{"dtype":"F16","shape":[3,2],"data_offsets":[0,12]}}`, make([]byte, 12)))
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255, '{', '}'})
	dst := make([]float32, m.Config.NumParams())
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := parseSafetensors(b)
		if err != nil {
			if !errors.Is(err, ErrSafetensors) {
				t.Fatalf("parseSafetensors error %v does not wrap ErrSafetensors", err)
			}
			return
		}
		for name, e := range sf.tensors {
			n := dtypeSize[e.dtype]
			for _, d := range e.shape {
				n *= d
			}
			if len(e.data) != n {
				t.Fatalf("tensor %q: %d bytes for shape %v of %s", name, len(e.data), e.shape, e.dtype)
			}
		}
		_ = readLayout(sf, m.layout, dst, "")
	})
}

// FuzzReadConfig: no config.json makes the parser panic, and whatever it
// accepts is a valid Config.
func FuzzReadConfig(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(goldenDir, ConfigFile)); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"vocab_size":11,"n_positions":6,"n_embd":8,"n_layer":2,"n_head":2,"n_inner":32}`))
	f.Add([]byte(`{"vocab_size":-1,"n_embd":8,"n_layer":2,"n_head":2,"n_ctx":4}`))
	f.Add([]byte(`{"vocab_size":1e400}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConfig(b, "config.json")
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parseConfig accepted %+v, which fails Validate: %v", c, err)
		}
	})
}

// TestResumeEquivalence: train, checkpoint, load, train on; the parameters
// are bit-identical to those of a run that never stopped.
func TestResumeEquivalence(t *testing.T) {
	cfg := Config{Vocab: 20, NEmbd: 16, NLayer: 1, NHead: 2, Ctx: 8}
	B, T := 2, 8
	r := NewRNG(31)
	toks, tgts := randTokens(r, B*T, cfg.Vocab), randTokens(r, B*T, cfg.Vocab)
	sched := Schedule{Kind: "cosine", Base: 1e-2, Min: 1e-3, WarmupSteps: 2, TotalSteps: 8}
	step := func(m *Model, opt *AdamW, s int64) {
		m.ZeroGrad()
		h := &ceHead{targets: tgts, V: cfg.Vocab, scale: 1 / float32(B*T)}
		if err := m.ForwardBackward(toks, B, T, h.backward); err != nil {
			t.Fatal(err)
		}
		ClipGradNorm(m.Grads, 1)
		opt.Step(m.Params, m.Grads, sched.LR(s))
	}
	pool := kernels.NewPool(1) // one thread: the GEMMs sum in one order in both runs
	straight := newMicro(t, cfg, 1, 5)
	so, _ := NewAdamW(straight.Layout(), DefaultAdamWOptions(), pool)
	for s := int64(0); s < 8; s++ {
		step(straight, so, s)
	}

	first := newMicro(t, cfg, 1, 5)
	fo, _ := NewAdamW(first.Layout(), DefaultAdamWOptions(), pool)
	for s := int64(0); s < 4; s++ {
		step(first, fo, s)
	}
	dir := t.TempDir()
	if err := SaveCheckpoint(dir, first, &TrainerState{Step: 4, Adam: &fo.State}); err != nil {
		t.Fatal(err)
	}
	resumed, st, err := LoadCheckpoint(dir, pool)
	if err != nil {
		t.Fatal(err)
	}
	ro, _ := NewAdamW(resumed.Layout(), DefaultAdamWOptions(), pool)
	ro.State = *st.Adam
	for s := st.Step; s < 8; s++ {
		step(resumed, ro, s)
	}
	for i := range straight.Params {
		if math.Float32bits(straight.Params[i]) != math.Float32bits(resumed.Params[i]) {
			t.Fatalf("param %d after resume = %g; uninterrupted run %g", i, resumed.Params[i], straight.Params[i])
		}
	}
}

// TestSafetensors32RoundTrip: another package's tensors come back as they
// were written, with the metadata; a tensor of another dtype, or a header
// that lies, is refused.
func TestSafetensors32RoundTrip(t *testing.T) {
	ts := []Tensor32{{"a", []int{2, 3}, []float32{1, -2, 3.5, 0, float32(math.Inf(1)), 6}}, {"b", []int{1}, []float32{7}}}
	b := EncodeSafetensors(ts, map[string]string{"k": "v"})
	got, meta, err := DecodeSafetensors32(b)
	if err != nil || meta["k"] != "v" || len(got) != 2 {
		t.Fatalf("DecodeSafetensors32 = %v, %v, %v", got, meta, err)
	}
	for _, w := range ts {
		g := got[w.Name]
		if !slices.Equal(g.Shape, w.Shape) || len(g.Data) != len(w.Data) {
			t.Fatalf("%s: %v; want %v", w.Name, g, w)
		}
		for i := range w.Data {
			if math.Float32bits(g.Data[i]) != math.Float32bits(w.Data[i]) {
				t.Errorf("%s[%d] = %v; want %v", w.Name, i, g.Data[i], w.Data[i])
			}
		}
	}
	f16 := bytes.Replace(b, []byte(`"dtype":"F32","shape":[1]`), []byte(`"dtype":"F16","shape":[2]`), 1)
	if _, _, err := DecodeSafetensors32(f16); !errors.Is(err, ErrSafetensors) || !strings.Contains(err.Error(), "not F32") {
		t.Errorf("an F16 tensor: %v; want ErrSafetensors saying it is not F32", err)
	}
	lie := slices.Clone(b)
	binary.LittleEndian.PutUint64(lie, 1<<62)
	if _, _, err := DecodeSafetensors32(lie); !errors.Is(err, ErrSafetensors) {
		t.Errorf("a lying header: %v; want ErrSafetensors", err)
	}
}
