package lm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/klring/klring/kernels"
)

// Files of a checkpoint folder.
const (
	ModelFile        = "model.safetensors"     // Hugging Face GPT-2 weights
	ConfigFile       = "config.json"           // Hugging Face GPT-2 config
	OptimizerFile    = "optimizer.safetensors" // AdamW moments: keys "m.<name>", "v.<name>"
	TrainerStateFile = "trainer_state.json"    // step, RNG, data cursor, file digests
)

// TrainerState is what a trainer needs besides the weights to resume a run
// exactly.
type TrainerState struct {
	Step int64           // optimizer steps taken
	RNG  uint64          // the trainer's RNG state (RNG.State)
	Data json.RawMessage // the data cursor, opaque to lm (nil for none); stored compacted
	Adam *AdamState      // AdamW moments; nil for none (SGD)
}

// hfConfig is config.json as Hugging Face's GPT2Config writes it.
type hfConfig struct {
	ModelType          string   `json:"model_type"`
	Architectures      []string `json:"architectures"`
	VocabSize          int      `json:"vocab_size"`
	NPositions         int      `json:"n_positions"`
	NCtx               int      `json:"n_ctx"`
	NEmbd              int      `json:"n_embd"`
	NLayer             int      `json:"n_layer"`
	NHead              int      `json:"n_head"`
	ActivationFunction string   `json:"activation_function"`
	LayerNormEpsilon   float64  `json:"layer_norm_epsilon"`
	TieWordEmbeddings  bool     `json:"tie_word_embeddings"`
	ResidPdrop         float64  `json:"resid_pdrop"`
	EmbdPdrop          float64  `json:"embd_pdrop"`
	AttnPdrop          float64  `json:"attn_pdrop"`
}

// trainerFile is trainer_state.json.
type trainerFile struct {
	Format      int             `json:"format"`
	Step        int64           `json:"step"`
	RNG         string          `json:"rng"` // decimal: JSON numbers lose uint64 bits
	Data        json.RawMessage `json:"data,omitempty"`
	AdamStep    *int64          `json:"adam_step,omitempty"`
	ModelSHA256 string          `json:"model_sha256"`
	OptimSHA256 string          `json:"optimizer_sha256,omitempty"`
	NumParams   int             `json:"num_params"` // the flat vector's length, padded rows included
	// VocabPad is the model's Config.VocabPad (absent: none): the padded
	// rows are in no file, but they are in the flat vector that the
	// optimizer and the cluster's all-reduce run over, so a resumed run
	// keeps its layout.
	VocabPad int `json:"vocab_pad,omitempty"`
}

// SaveCheckpoint writes m (and st, when not nil) to the folder dir, creating it.
// Each file is written atomically (temporary file, fsync, rename) and the
// folder is synced; trainer_state.json goes last and records the SHA-256 of
// the other files, so a folder left half-written by a crash is detected by
// LoadCheckpoint.
func SaveCheckpoint(dir string, m *Model, st *TrainerState) error {
	m.checkBuffers()
	if st != nil && st.Data != nil && !json.Valid(st.Data) {
		return fmt.Errorf("save checkpoint: trainer state data is not valid JSON: %w", ErrCheckpoint)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	model := encodeSafetensors(layoutTensors(m.layout, m.Params, ""), map[string]string{"format": "pt"})
	if err := writeAtomic(filepath.Join(dir, ModelFile), model); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	c := m.Config
	cfg, err := json.MarshalIndent(hfConfig{
		ModelType: "gpt2", Architectures: []string{"GPT2LMHeadModel"},
		VocabSize: c.Vocab, NPositions: c.Ctx, NCtx: c.Ctx, NEmbd: c.NEmbd, NLayer: c.NLayer, NHead: c.NHead,
		ActivationFunction: "gelu_new", LayerNormEpsilon: 1e-5, TieWordEmbeddings: true,
	}, "", " ")
	if err != nil {
		return fmt.Errorf("save checkpoint: config: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, ConfigFile), append(cfg, '\n')); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if st != nil {
		tf := trainerFile{Format: 1, Step: st.Step, RNG: strconv.FormatUint(st.RNG, 10), Data: st.Data,
			ModelSHA256: digest(model), NumParams: c.NumParams(), VocabPad: c.VocabPad}
		if st.Adam != nil {
			n := c.NumParams()
			if len(st.Adam.M) != n || len(st.Adam.V) != n {
				panic(fmt.Sprintf("lm: AdamState with %d/%d moments, want %d", len(st.Adam.M), len(st.Adam.V), n))
			}
			ts := append(layoutTensors(m.layout, st.Adam.M, "m."), layoutTensors(m.layout, st.Adam.V, "v.")...)
			opt := encodeSafetensors(ts, map[string]string{"format": "klring-adamw"})
			if err := writeAtomic(filepath.Join(dir, OptimizerFile), opt); err != nil {
				return fmt.Errorf("save checkpoint: %w", err)
			}
			t := st.Adam.T
			tf.AdamStep, tf.OptimSHA256 = &t, digest(opt)
		} else if err := os.Remove(filepath.Join(dir, OptimizerFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("save checkpoint: %w", err)
		}
		js, err := json.Marshal(tf) // Data is kept as given (compacted)
		if err != nil {
			return fmt.Errorf("save checkpoint: trainer state: %w", err)
		}
		if err := writeAtomic(filepath.Join(dir, TrainerStateFile), append(js, '\n')); err != nil {
			return fmt.Errorf("save checkpoint: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeAtomic writes data to path through a temporary file in the same
// folder: write, fsync, close, rename.
func writeAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ReadConfig reads a Hugging Face GPT-2 config.json. It accepts any extra
// keys, and rejects what this model cannot reproduce: another model_type, an
// activation other than the tanh GELU, an epsilon other than 1e-5, an untied
// head, an MLP width other than 4C.
func ReadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(b, path)
}

// parseConfig is ReadConfig on the bytes b of the file path.
func parseConfig(b []byte, path string) (Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return Config{}, fmt.Errorf("read config %s: %w: %w", path, ErrCheckpoint, err)
	}
	var h hfConfig
	if err := json.Unmarshal(b, &h); err != nil {
		return Config{}, fmt.Errorf("read config %s: %w: %w", path, ErrCheckpoint, err)
	}
	bad := func(format string, a ...any) (Config, error) {
		return Config{}, fmt.Errorf("read config %s: "+format+": %w", append(append([]any{path}, a...), ErrCheckpoint)...)
	}
	for _, k := range []string{"vocab_size", "n_embd", "n_layer", "n_head"} {
		if _, ok := raw[k]; !ok {
			return bad("no %s", k)
		}
	}
	if _, ok := raw["model_type"]; ok && h.ModelType != "gpt2" {
		return bad("model_type %q, want gpt2", h.ModelType)
	}
	if _, ok := raw["activation_function"]; ok && h.ActivationFunction != "gelu_new" && h.ActivationFunction != "gelu_pytorch_tanh" {
		return bad("activation_function %q, want gelu_new", h.ActivationFunction)
	}
	if _, ok := raw["layer_norm_epsilon"]; ok && math.Abs(h.LayerNormEpsilon-1e-5) > 1e-12 {
		return bad("layer_norm_epsilon %g, want 1e-05", h.LayerNormEpsilon)
	}
	if _, ok := raw["tie_word_embeddings"]; ok && !h.TieWordEmbeddings {
		return bad("tie_word_embeddings false, want true")
	}
	if inner, ok := raw["n_inner"]; ok && string(inner) != "null" {
		var n int
		if err := json.Unmarshal(inner, &n); err != nil || n != 4*h.NEmbd {
			return bad("n_inner %s, want null or %d", inner, 4*h.NEmbd)
		}
	}
	ctx := h.NPositions
	if _, ok := raw["n_positions"]; !ok {
		ctx = h.NCtx
	}
	c := Config{Vocab: h.VocabSize, NEmbd: h.NEmbd, NLayer: h.NLayer, NHead: h.NHead, Ctx: ctx}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("read config %s: %w", path, err)
	}
	return c, nil
}

// LoadCheckpoint reads a checkpoint folder: config.json and model.safetensors
// in the Hugging Face GPT-2 layout, written by SaveCheckpoint or by other tools
// (any key order, an optional "transformer." prefix, extra keys such as
// h.N.attn.bias ignored, F32 only). The TrainerState is nil when the folder
// has no trainer_state.json. The model's vocabulary padding (Config.VocabPad)
// is the one trainer_state.json records, none without it: files hold the V
// real rows of wte, the padded rows are zero (WithVocabPad changes it).
func LoadCheckpoint(dir string, pool *kernels.Pool) (*Model, *TrainerState, error) {
	cfg, err := ReadConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	modelBytes, err := os.ReadFile(filepath.Join(dir, ModelFile))
	if err != nil {
		return nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	// A config that lies about the size must not make us allocate for it.
	if need := 4 * int64(cfg.NumParams()); int64(len(modelBytes)) < need {
		return nil, nil, fmt.Errorf("load checkpoint: %s has %d bytes, the config's %d parameters need %d: %w",
			ModelFile, len(modelBytes), cfg.NumParams(), need, ErrCheckpoint)
	}
	js, err := os.ReadFile(filepath.Join(dir, TrainerStateFile))
	hasState := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	var tf trainerFile
	if hasState {
		if err := json.Unmarshal(js, &tf); err != nil {
			return nil, nil, fmt.Errorf("load checkpoint %s: %w: %w", TrainerStateFile, ErrCheckpoint, err)
		}
		if tf.Format != 1 {
			return nil, nil, fmt.Errorf("load checkpoint %s: format %d, want 1: %w", TrainerStateFile, tf.Format, ErrCheckpoint)
		}
		cfg.VocabPad = tf.VocabPad
		if err := cfg.Validate(); err != nil {
			return nil, nil, fmt.Errorf("load checkpoint %s: %w", TrainerStateFile, err)
		}
		if tf.NumParams != cfg.NumParams() {
			return nil, nil, fmt.Errorf("load checkpoint %s: num_params %d, the model of %s and vocab_pad %d has %d: %w",
				TrainerStateFile, tf.NumParams, ConfigFile, tf.VocabPad, cfg.NumParams(), ErrCheckpoint)
		}
	}
	m, err := New(cfg, pool)
	if err != nil {
		return nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	if err := loadParams(m.layout, m.Params, modelBytes, ""); err != nil {
		return nil, nil, fmt.Errorf("load checkpoint %s: %w", ModelFile, err)
	}
	if !hasState {
		return m, nil, nil
	}
	if tf.ModelSHA256 != digest(modelBytes) {
		return nil, nil, fmt.Errorf("load checkpoint: %s does not match the digest in %s (interrupted save?): %w", ModelFile, TrainerStateFile, ErrCheckpoint)
	}
	rng, err := strconv.ParseUint(tf.RNG, 10, 64)
	if err != nil {
		return nil, nil, fmt.Errorf("load checkpoint %s: rng %q: %w", TrainerStateFile, tf.RNG, ErrCheckpoint)
	}
	st := &TrainerState{Step: tf.Step, RNG: rng, Data: tf.Data}
	if tf.AdamStep != nil {
		ob, err := os.ReadFile(filepath.Join(dir, OptimizerFile))
		if err != nil {
			return nil, nil, fmt.Errorf("load checkpoint: %w", err)
		}
		if tf.OptimSHA256 != digest(ob) {
			return nil, nil, fmt.Errorf("load checkpoint: %s does not match the digest in %s (interrupted save?): %w", OptimizerFile, TrainerStateFile, ErrCheckpoint)
		}
		n := cfg.NumParams()
		a := &AdamState{T: *tf.AdamStep, M: make([]float32, n), V: make([]float32, n)}
		if err := loadParams(m.layout, a.M, ob, "m."); err != nil {
			return nil, nil, fmt.Errorf("load checkpoint %s: %w", OptimizerFile, err)
		}
		if err := loadParams(m.layout, a.V, ob, "v."); err != nil {
			return nil, nil, fmt.Errorf("load checkpoint %s: %w", OptimizerFile, err)
		}
		st.Adam = a
	}
	return m, st, nil
}

// loadParams parses a safetensors file and fills dst by the layout.
func loadParams(layout []Tensor, dst []float32, file []byte, prefix string) error {
	f, err := parseSafetensors(file)
	if err != nil {
		return err
	}
	return readLayout(f, layout, dst, prefix)
}

// WithVocabPad returns the model with its vocabulary padded to a multiple of
// pad (Config.VocabPad; 0 or 1: none): m itself when it already is, else a new
// model on the same pool with the same parameters, its padded rows zero, and
// a zero gradient. It is how a checkpoint written without padding (a Hugging
// Face folder) becomes a padded model, and back.
func (m *Model) WithVocabPad(pad int) (*Model, error) {
	m.checkParams()
	cfg := m.Config
	cfg.VocabPad = pad
	if cfg == m.Config {
		return m, nil
	}
	n, err := New(cfg, m.pool)
	if err != nil {
		return nil, fmt.Errorf("vocabulary padding: %w", err)
	}
	for i, t := range m.layout {
		copy(n.layout[i].View(n.Params), t.View(m.Params)[:t.FileSize()])
	}
	return n, nil
}
