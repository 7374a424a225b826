package compare

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/klring/klring/config"
	"github.com/klring/klring/engine"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/outputs"
	"github.com/klring/klring/teacherstore"
)

// ErrSetting is wrapped by every error about what is compared: an unknown
// or forbidden key, a bad value, a setting that cannot train.
var ErrSetting = errors.New("compare: invalid setting")

// ErrRunDirUsed is wrapped by the error of a run.dir that already holds a
// comparison's outputs or the run folder of one of its settings.
var ErrRunDirUsed = errors.New("compare: run.dir already used")

// Vary is one varied key and its values, as --vary KEY=a,b,c; or, with Key
// CaseKey, named cases (--case), each setting several keys at once.
type Vary struct {
	Key    string
	Values []string
	// Cases holds, for Key CaseKey, the keys each named value sets.
	Cases map[string][][2]string `json:"cases,omitempty"`
}

// CaseKey is the Key of the Vary of named cases.
const CaseKey = "case"

// ParseCases parses --case NAME:KEY=V[;KEY=V...] (each a named setting of
// several keys, such as "forward-T2:loss.temperature=2;loss.scale_t2=true")
// into one Vary whose values are the names, in order.
func ParseCases(cases []string) (Vary, error) {
	v := Vary{Key: CaseKey, Cases: map[string][][2]string{}}
	for _, c := range cases {
		name, sets, ok := strings.Cut(c, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return Vary{}, fmt.Errorf("%w: --case %q: want NAME:KEY=VALUE[;KEY=VALUE...], such as forward-T2:loss.temperature=2;loss.scale_t2=true", ErrSetting, c)
		}
		if _, dup := v.Cases[name]; dup {
			return Vary{}, fmt.Errorf("%w: --case %s given twice", ErrSetting, name)
		}
		var kvs [][2]string
		for _, kv := range strings.Split(sets, ";") {
			if strings.TrimSpace(kv) == "" {
				continue
			}
			one, err := ParseVary(kv)
			if err != nil {
				return Vary{}, fmt.Errorf("--case %s: %w", name, err)
			}
			if len(one.Values) != 1 {
				return Vary{}, fmt.Errorf("%w: --case %s: %s has %d values; a case sets one", ErrSetting, name, one.Key, len(one.Values))
			}
			kvs = append(kvs, [2]string{one.Key, one.Values[0]})
		}
		v.Values = append(v.Values, name)
		v.Cases[name] = kvs
	}
	return v, nil
}

// keys that a comparison owns or that cannot differ between its runs.
var fixedKeys = map[string]string{
	"run.dir":          "each setting runs in a folder of its own under the comparison's run.dir",
	"run.metrics_addr": "the runs are one after the other on one address",
	"job":              "the runs are named by their settings",
}

// ParseVary parses KEY=a,b,...: KEY must be a configuration key (config.Keys)
// that a comparison may vary, with at least one value and no value twice.
// Values are checked when the configurations are built (Plan).
func ParseVary(s string) (Vary, error) {
	key, vals, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return Vary{}, fmt.Errorf("%w: --vary %q: want KEY=VALUE[,VALUE...], such as loss.direction=forward,reverse,jsd", ErrSetting, s)
	}
	known := false
	for _, k := range config.Keys() {
		known = known || k.Name == key
	}
	if !known {
		return Vary{}, fmt.Errorf("%w: --vary %s: unknown configuration key %q (see --help for the keys)", ErrSetting, s, key)
	}
	if why, ok := fixedKeys[key]; ok {
		return Vary{}, fmt.Errorf("%w: --vary %s: %s cannot be varied: %s", ErrSetting, s, key, why)
	}
	v := Vary{Key: key}
	for _, x := range strings.Split(vals, ",") {
		x = strings.TrimSpace(x)
		if x == "" {
			return Vary{}, fmt.Errorf("%w: --vary %s: an empty value", ErrSetting, s)
		}
		if slices.Contains(v.Values, x) {
			return Vary{}, fmt.Errorf("%w: --vary %s: value %q twice", ErrSetting, s, x)
		}
		v.Values = append(v.Values, x)
	}
	return v, nil
}

// Setting is one combination of the varied values and its configuration.
type Setting struct {
	Name   string      // "loss.direction=reverse loss.beta=0.5"
	Values [][2]string // the (key, value) pairs, in the order of the Varys
	Config config.Config
}

// Loader builds a configuration with the given keys set (as flags would
// set them) over the rest of the configuration.
type Loader func(set [][2]string) (config.Config, error)

// FlagLoader is the Loader of a command whose configuration flags are fs
// (config.AddFlags): the flags the user set (but those in skip), then set,
// over the --config file, KLRING_* variables and the defaults, as
// config.Load layers them.
func FlagLoader(fs *pflag.FlagSet, skip ...string) Loader {
	return func(set [][2]string) (config.Config, error) {
		nfs := pflag.NewFlagSet("compare", pflag.ContinueOnError)
		config.AddFlags(nfs)
		var err error
		fs.Visit(func(f *pflag.Flag) {
			if err != nil || slices.Contains(skip, f.Name) || nfs.Lookup(f.Name) == nil {
				return
			}
			if e := nfs.Set(f.Name, f.Value.String()); e != nil {
				err = fmt.Errorf("--%s: %w", f.Name, e)
			}
		})
		if err != nil {
			return config.Config{}, err
		}
		for _, kv := range set {
			if e := nfs.Set(kv[0], kv[1]); e != nil {
				return config.Config{}, fmt.Errorf("%w: %s=%s: %w", ErrSetting, kv[0], kv[1], e)
			}
		}
		return config.Load(nfs)
	}
}

// Plan builds the configuration of every combination of the varied values
// (the first Vary varies slowest) and checks them all before anything
// runs: each must load and validate, train to a finite loss (Check), and
// find the files it names (CheckFiles). Settings run in dir/NN-NAME with at
// least evalPoints held-out evaluations, unless evalEvery > 0 fixes the
// interval. dir must not hold an earlier comparison (compare.json,
// compare.csv) or the run folder of any of the settings (ErrRunDirUsed): a
// comparison never resumes or replaces another.
func Plan(vary []Vary, load Loader, dir string, evalEvery int) ([]Setting, error) {
	if len(vary) == 0 {
		return nil, fmt.Errorf("%w: nothing to compare: give --vary KEY=a,b (e.g. --vary loss.direction=forward,reverse,jsd) or --case NAME:KEY=V;KEY=V", ErrSetting)
	}
	seen := map[string]bool{}
	for _, v := range vary {
		if seen[v.Key] {
			return nil, fmt.Errorf("%w: --vary %s given twice", ErrSetting, v.Key)
		}
		seen[v.Key] = true
	}
	combos := [][][2]string{nil}
	for _, v := range vary {
		var next [][][2]string
		for _, c := range combos {
			for _, x := range v.Values {
				next = append(next, append(slices.Clone(c), [2]string{v.Key, x}))
			}
		}
		combos = next
	}
	var out []Setting
	var errs []error
	used := false
	for _, f := range outputFiles {
		if err := unused(dir, filepath.Join(dir, f), "an earlier comparison's "+f); err != nil {
			errs = append(errs, err)
			used = true
			break
		}
	}
	cases := map[string][][2]string{}
	for _, v := range vary {
		if v.Key == CaseKey {
			cases = v.Cases
		}
	}
	for i, c := range combos {
		parts := make([]string, len(c))
		var set [][2]string
		for j, kv := range c {
			parts[j] = kv[0] + "=" + kv[1]
			if kv[0] == CaseKey {
				parts[j] = kv[1]
				set = append(set, cases[kv[1]]...)
				continue
			}
			set = append(set, kv)
		}
		s := Setting{Name: strings.Join(parts, " "), Values: c}
		runDir := filepath.Join(dir, fmt.Sprintf("%02d-%s", i+1, slug(s.Name)))
		if !used {
			if err := unused(dir, runDir, fmt.Sprintf("the run folder of setting %q from an earlier comparison", s.Name)); err != nil {
				errs = append(errs, err)
				used = true
			}
		}
		cfg, err := load(set)
		if err == nil {
			err = Check(cfg)
		}
		if err == nil {
			err = CheckFiles(cfg)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("setting %q: %w", s.Name, err))
			continue
		}
		cfg.Run.Dir = runDir
		if evalEvery > 0 {
			cfg.Run.EvalEvery = evalEvery
		} else {
			cfg.Run.EvalEvery = max(1, cfg.Train.Steps/evalPoints)
		}
		cfg.Run.MetricsAddr = ""
		s.Config = cfg
		out = append(out, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// outputFiles are what a comparison writes into its run.dir, besides the
// settings' run folders.
var outputFiles = []string{"compare.json", "compare.csv"}

// unused is nil when path (what, inside the comparison's run.dir dir) does
// not exist.
func unused(dir, path, what string) error {
	_, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%w: run.dir %s: %w", ErrRunDirUsed, dir, err)
	}
	return fmt.Errorf("%w: run.dir %s already holds %s (%s): a comparison neither resumes nor replaces another; choose another --run.dir (or remove %s)",
		ErrRunDirUsed, dir, what, path, dir)
}

// evalPoints is the evaluations a run makes when compare chooses.
const evalPoints = 20

var unsafe = regexp.MustCompile(`[^A-Za-z0-9_.=-]+`)

func slug(s string) string { return strings.Trim(unsafe.ReplaceAllString(s, "_"), "_") }

// Check refuses a configuration that cannot train to a finite loss, before
// it runs: reverse KL (or JSD at beta 1, which is reverse KL) against the
// synthetic truth without label smoothing, and any direction but forward
// against hard targets, with what to do about it.
func Check(cfg config.Config) error {
	l := cfg.Loss
	teacher := l.Teacher != "" || l.TeacherStore != ""
	synthetic := cfg.Data.Source == "" || strings.HasPrefix(cfg.Data.Source, "synthetic")
	t := l.Target
	if t == engine.TargetAuto {
		switch {
		case teacher:
			t = engine.TargetTeacher
		case synthetic:
			t = engine.TargetSoft
		default:
			t = engine.TargetHard
		}
	}
	reverse := l.Direction == loss.Reverse || l.Direction == loss.JSD && l.Beta == 1
	switch {
	case t == engine.TargetSoft && reverse && l.LabelSmoothing == 0:
		return fmt.Errorf("%w: loss.direction = %v against the synthetic truth needs loss.label_smoothing > 0 (e.g. --loss.label_smoothing 0.01): "+
			"the true distribution gives zero probability to most tokens, where D_KL(Q||P) is infinite", ErrSetting, l.Direction)
	case t == engine.TargetHard && l.Direction != loss.Forward:
		return fmt.Errorf("%w: loss.direction = %v needs soft targets (synthetic data, or a teacher): against the actual next tokens only forward KL is finite", ErrSetting, l.Direction)
	}
	return nil
}

// CheckFiles refuses a configuration whose files cannot be opened, before
// it runs: the file of data.source (text:PATH, tokens:PATH), the Hugging
// Face GPT-2 folders of model.init and loss.teacher (a config.json that
// reads, a model.safetensors that opens) and the store of
// loss.teacher_store (its header and length), each error naming the key.
// It reads no more than headers and a config: whether the files fit the
// job (vocabulary, context, the store's data) is Run's Options.Check, on
// every setting before the first runs.
func CheckFiles(cfg config.Config) error {
	var errs []error
	bad := func(key, val string, err error) {
		errs = append(errs, fmt.Errorf("%w: %s %s: %w", ErrSetting, key, val, err))
	}
	for _, prefix := range []string{"text:", "tokens:"} {
		if path, ok := strings.CutPrefix(cfg.Data.Source, prefix); ok {
			if err := openable(path, false); err != nil {
				bad("data.source", cfg.Data.Source, err)
			}
		}
	}
	for _, kv := range [][2]string{{"model.init", cfg.Model.Init}, {"loss.teacher", cfg.Loss.Teacher}} {
		if kv[1] == "" {
			continue
		}
		if err := gpt2Folder(kv[1]); err != nil {
			bad(kv[0], kv[1], err)
		}
	}
	if p := cfg.Loss.TeacherStore; p != "" {
		st, err := teacherstore.Open(p)
		if err != nil {
			bad("loss.teacher_store", p, err)
		} else {
			st.Close()
		}
	}
	return errors.Join(errs...)
}

// openable opens path and checks that it is a folder (dir) or not.
func openable(path string, dir bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return err
	case dir && !st.IsDir():
		return fmt.Errorf("%s is not a folder", path)
	case !dir && st.IsDir():
		return fmt.Errorf("%s is a folder, not a file", path)
	}
	return nil
}

// gpt2Folder checks that dir is a Hugging Face GPT-2 folder: a config.json
// that reads and a model.safetensors that opens.
func gpt2Folder(dir string) error {
	if err := openable(dir, true); err != nil {
		return err
	}
	if _, err := lm.ReadConfig(filepath.Join(dir, lm.ConfigFile)); err != nil {
		return err
	}
	return openable(filepath.Join(dir, lm.ModelFile), false)
}

// Options configure Run.
type Options struct {
	// Dir receives compare.csv, compare.json and the plots.
	Dir string
	// Log receives each run's log lines (nil: discarded).
	Log *slog.Logger
	// Simulate runs one setting (cluster.Simulate).
	Simulate func(context.Context, config.Config, *slog.Logger, func(outputs.StepMetrics)) (outputs.Summary, error)
	// Check, when not nil, opens one setting's job as its run would
	// without training (cluster.CheckJob): Run calls it on every setting
	// before the first runs, so that files that do not fit the job (a
	// teacher of another vocabulary or context, a store of other data) are
	// found before any setting has trained.
	Check func(config.Config) error
	// Progress, when not nil, is called with each setting's index before
	// it starts, and returns the progress function of its run (or nil).
	Progress func(i int, s Setting) func(outputs.StepMetrics)
}

// Point is one held-out evaluation of a run.
type Point struct {
	Step    uint64   `json:"step"`
	Tokens  int64    `json:"tokens"`
	KL      *float64 `json:"val_kl_to_truth,omitempty"`
	CE      float64  `json:"val_loss"`
	Entropy *float64 `json:"val_entropy,omitempty"`
	// SampleKL is the reverse KL to the truth on the model's own samples
	// (run.sample_kl_windows).
	SampleKL *float64 `json:"val_sample_kl,omitempty"`
}

// Row is what one setting's run gave.
type Row struct {
	Setting    string            `json:"setting"`
	Values     map[string]string `json:"values"`
	RunDir     string            `json:"run_dir"`
	Source     string            `json:"data_source"`
	Steps      uint64            `json:"steps"`
	Tokens     int64             `json:"tokens"`
	KL         *float64          `json:"val_kl_to_truth,omitempty"` // exact, held-out (synthetic data)
	CE         float64           `json:"val_loss"`                  // held-out cross-entropy
	Entropy    float64           `json:"val_entropy"`               // held-out entropy of the model
	Floor      *float64          `json:"entropy_floor,omitempty"`
	SampleKL   *float64          `json:"val_sample_kl,omitempty"` // reverse KL to the truth on the model's samples
	TokensPerS float64           `json:"tokens_per_s"`
	Seconds    float64           `json:"seconds"`
	Curve      []Point           `json:"curve"`
}

// Result is a finished comparison.
type Result struct {
	Vary  []Vary   `json:"vary"`
	Rows  []Row    `json:"rows"`
	CSV   string   `json:"-"`
	JSON  string   `json:"-"`
	Plots []string `json:"plots"`
}

// Run runs the settings one after the other with o.Simulate, each in its
// own run.dir, then writes compare.csv, compare.json and the plots into
// o.Dir. A failed run stops the comparison (the settings before it keep
// their run folders).
func Run(ctx context.Context, vary []Vary, settings []Setting, o Options) (Result, error) {
	res := Result{Vary: vary}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Check != nil {
		var errs []error
		for _, s := range settings {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			if err := o.Check(s.Config); err != nil {
				errs = append(errs, fmt.Errorf("setting %q: %w", s.Name, err))
			}
		}
		if len(errs) > 0 {
			return res, errors.Join(errs...)
		}
	}
	for i, s := range settings {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		var progress func(outputs.StepMetrics)
		if o.Progress != nil {
			progress = o.Progress(i, s)
		}
		if progress == nil {
			progress = func(outputs.StepMetrics) {}
		}
		start := time.Now()
		sum, err := o.Simulate(ctx, s.Config, log.With("setting", s.Name), progress)
		if err != nil {
			return res, fmt.Errorf("setting %q: %w", s.Name, err)
		}
		if sum.Stopped {
			return res, fmt.Errorf("setting %q: the run stopped at step %d before its end", s.Name, sum.Steps)
		}
		row, err := rowOf(s, sum, time.Since(start).Seconds())
		if err != nil {
			return res, err
		}
		res.Rows = append(res.Rows, row)
	}
	if err := Write(&res, o.Dir); err != nil {
		return res, err
	}
	return res, nil
}

// rowOf reads a finished run's metrics into a row.
func rowOf(s Setting, sum outputs.Summary, secs float64) (Row, error) {
	r := Row{Setting: s.Name, Values: map[string]string{}, RunDir: s.Config.Run.Dir, Source: s.Config.Data.Source, Steps: sum.Steps, Tokens: sum.Tokens,
		CE: sum.ValLoss, Entropy: sum.ValEntropy, TokensPerS: sum.TokensPerS, Seconds: secs, SampleKL: sum.ValSampleKL}
	for _, kv := range s.Values {
		r.Values[kv[0]] = kv[1]
	}
	if sum.ValKL >= 0 && sum.EntropyFloor >= 0 {
		kl := sum.ValKL
		r.KL = &kl
	}
	if sum.EntropyFloor >= 0 {
		f := sum.EntropyFloor
		r.Floor = &f
	}
	rows, err := outputs.ReadMetrics(s.Config.Run.Dir)
	if err != nil {
		return r, fmt.Errorf("setting %q: %w", s.Name, err)
	}
	for _, m := range rows {
		if m.ValLoss == nil {
			continue
		}
		r.Curve = append(r.Curve, Point{Step: m.Step, Tokens: m.TotalTok, KL: m.ValKL, CE: *m.ValLoss, Entropy: m.ValEntropy, SampleKL: m.ValSampleKL})
	}
	// The final evaluation, when metrics.jsonl ends before it.
	if n := len(r.Curve); n == 0 || r.Curve[n-1].Step != sum.Steps {
		h := r.Entropy
		r.Curve = append(r.Curve, Point{Step: sum.Steps, Tokens: sum.Tokens, KL: r.KL, CE: r.CE, Entropy: &h, SampleKL: r.SampleKL})
	}
	return r, nil
}
