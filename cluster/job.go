package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/config"
	"github.com/klring/klring/engine"
	"github.com/klring/klring/kernels"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/netem"
	"github.com/klring/klring/shard"
	"github.com/klring/klring/teacherstore"
	"github.com/klring/klring/tokenizer"
)

// Env is what the replicas of one process share: the kernels' parallelism
// budget and, in simulation mode, the opened data. It holds no state of a run.
type Env struct {
	Pool *kernels.Pool
	// StartWorkers is how many workers the first step waits for (simulation
	// mode waits for all of them); 0 means cluster.min_workers.
	StartWorkers int
	// MaxWorkers caps the members of an epoch (0: no cap); Linger ends the
	// run with a pause plan, so the workers wait for the next coordinator
	// (ServeOptions: sweeps over workers started elsewhere).
	MaxWorkers int
	Linger     bool
	// Link shapes the ring's links between in-process workers (scaling
	// experiments); the zero value leaves them as they are. LinkSeed seeds
	// the links' random draws (loss, jitter).
	Link     netem.LinkProfile
	LinkSeed uint64
	// MeasureCPU makes workers account their compute in the CPU time of the
	// thread that runs it (scaling experiments, with a budget of one thread
	// per worker).
	MeasureCPU bool
	// CacheDir holds tokenized texts (data.cache_dir); empty: the user's
	// cache folder.
	CacheDir string
	// Log receives the data's messages (tokenizing, the token cache).
	Log *slog.Logger

	// turns, when not nil, holds one token per share of the cores: the
	// in-process workers of a simulation take one to compute a gradient,
	// so that no more of them compute at once than the cores hold
	// (Worker.gradient).
	turns chan struct{}

	data   *dataCache
	hub    *allreduce.MemHub // in-process ring mailboxes (simulation mode's scaling experiments)
	faults *ringFaults       // ring parts to lose or damage (coordinator chaos)
}

// dataCache opens each data source once per process.
type dataCache struct {
	mu       sync.Mutex
	datasets map[string]*shard.Dataset
	toks     map[string]tokenizer.Tokenizer
	teachers map[string]*teacherWeights
	stores   map[string]*teacherstore.Store
}

// NewEnv returns an environment with a budget of threads kernel goroutines
// (0: every core). Its kernels yield the processor at every call
// (kernels.Pool.SetYield): a worker's ring, the NATS client and, in a
// simulation, the server and the other replicas run beside the kernels, and
// the goroutines that carry a message must not wait out the scheduler's
// time slice (10 ms) behind one.
func NewEnv(threads int) *Env {
	p := kernels.NewPool(threads)
	p.SetYield(true)
	return &Env{Pool: p, data: &dataCache{}}
}

// turn waits for a turn on the cores (Env.turns; at once without them) and
// returns what ends it, or ctx's error if ctx ends first.
func (e *Env) turn(ctx context.Context) (release func(), err error) {
	if e.turns == nil {
		return func() {}, nil
	}
	select {
	case e.turns <- struct{}{}:
		return func() { <-e.turns }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// withPool returns a copy of e with a budget of its own, yielding as
// NewEnv's does, that shares e's data.
func (e *Env) withPool(p *kernels.Pool) *Env {
	p.SetYield(true)
	c := *e
	c.Pool = p
	return &c
}

// teacherWeights is a teacher loaded once per process: every in-process
// replica runs it over the same read-only parameters.
type teacherWeights struct {
	cfg    lm.Config
	params []float32
	sha    string // of its model.safetensors
}

// teacher loads the teacher in dir once per Env.
func (e *Env) teacher(dir string) (*teacherWeights, error) {
	e.data.mu.Lock()
	defer e.data.mu.Unlock()
	if t := e.data.teachers[dir]; t != nil {
		return t, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, lm.ModelFile))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	m, _, err := lm.LoadCheckpoint(dir, e.Pool)
	if err != nil {
		return nil, err
	}
	t := &teacherWeights{cfg: m.Config, params: m.Params, sha: hex.EncodeToString(sum[:])}
	if e.data.teachers == nil {
		e.data.teachers = map[string]*teacherWeights{}
	}
	e.data.teachers[dir] = t
	return t, nil
}

// teacherStore opens the teacher store at path once per Env: in-process
// replicas read the one mapping (a Store is safe for concurrent use).
func (e *Env) teacherStore(path string) (*teacherstore.Store, error) {
	e.data.mu.Lock()
	defer e.data.mu.Unlock()
	if s := e.data.stores[path]; s != nil {
		return s, nil
	}
	s, err := teacherstore.Open(path)
	if err != nil {
		return nil, err
	}
	if e.data.stores == nil {
		e.data.stores = map[string]*teacherstore.Store{}
	}
	e.data.stores[path] = s
	return s, nil
}

// jobStore is the job's teacher store, checked against the header and
// digest the coordinator sent; nil without one.
func (e *Env) jobStore(spec JobSpec) (*teacherstore.Store, error) {
	if spec.TeacherStore == "" {
		return nil, nil
	}
	s, err := e.teacherStore(spec.TeacherStore)
	if err != nil {
		return nil, fmt.Errorf("loss.teacher_store: %w", err)
	}
	if err := s.Check(spec.TeacherStoreHeader); err != nil {
		return nil, fmt.Errorf("loss.teacher_store %s is not the coordinator's: %w", spec.TeacherStore, err)
	}
	if d := s.Digest(); d != spec.TeacherStoreDigest {
		return nil, fmt.Errorf("loss.teacher_store %s holds other records than the coordinator's (digest %s, the coordinator's %s): it is another store", spec.TeacherStore, d, spec.TeacherStoreDigest)
	}
	return s, nil
}

// teacherModel is a forward-only model of the job's teacher over the
// process's one copy of its weights; nil without a teacher.
func (e *Env) teacherModel(spec JobSpec) (*lm.Model, error) {
	if spec.Teacher == "" {
		return nil, nil
	}
	t, err := e.teacher(spec.Teacher)
	if err != nil {
		return nil, fmt.Errorf("loss.teacher: %w", err)
	}
	return lm.NewInference(t.cfg, t.params, e.Pool)
}

// dataRequest builds the data request of a job spec.
func dataRequest(s JobSpec) engine.DataRequest {
	return engine.DataRequest{Options: shard.Options{Source: s.DataSource, Ctx: s.Model.Ctx, ValFraction: s.ValFraction, Seed: s.DataSeed},
		Tokenizer: s.Tokenizer}
}

// tokenBytes is the bytes of text each token id of the job's data stands
// for, or nil when its tokens are not text (synthetic data, token files of
// unknown origin).
func (e *Env) tokenBytes(spec JobSpec) (func(int32) int, error) {
	name := spec.Tokenizer
	if name == "" {
		name = tokenizer.NameBytes
	}
	text := strings.HasPrefix(spec.DataSource, "text:")
	if !text && !(strings.HasPrefix(spec.DataSource, "tokens:") && name != tokenizer.NameBytes) {
		return nil, nil
	}
	e.data.mu.Lock()
	defer e.data.mu.Unlock()
	if e.data.toks == nil {
		e.data.toks = map[string]tokenizer.Tokenizer{}
	}
	tok := e.data.toks[name]
	if tok == nil {
		var err error
		if tok, err = tokenizer.New(name); err != nil {
			return nil, err
		}
		e.data.toks[name] = tok
	}
	return tok.TokenBytes, nil
}

// dataset opens a data source once per Env.
func (e *Env) dataset(r engine.DataRequest) (*shard.Dataset, error) {
	key := fmt.Sprintf("%+v", r)
	dc := e.data
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if d := dc.datasets[key]; d != nil {
		return d, nil
	}
	log := e.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d, err := engine.OpenData(context.Background(), r, e.CacheDir, log)
	if err != nil {
		return nil, err
	}
	if dc.datasets == nil {
		dc.datasets = map[string]*shard.Dataset{}
	}
	dc.datasets[key] = d
	return d, nil
}

// jobState is one replica of the job: the model, its optimizer and, on the
// coordinator, the position in the data. The coordinator's is the master
// copy; workers hold replicas that must stay bit-identical to it.
type jobState struct {
	spec  JobSpec
	env   *Env
	model *lm.Model
	opt   lm.Optimizer
	adam  *lm.AdamW // nil for SGD
	sched lm.Schedule
	data  *shard.Dataset
	eng   *engine.Engine

	step        uint64 // committed steps applied to model.Params
	startStep   uint64
	damaged     []string // newer checkpoints the resume skipped (moveDamaged)
	cursor      shard.Cursor
	rng         uint64
	initialised bool

	segBuf  []byte
	segHash *xxhash.Digest // partDigest's, on the ring's goroutine

	// Error feedback (a worker's, allreduce.error_feedback): resid is the
	// rounding residual of the last step this worker computed that
	// committed (residAt), added to its next gradient; staged is the
	// residual of the attempt it computed last (stagedAt), which becomes
	// resid when that attempt commits (ApplyPending), as the staged update
	// does, and is overwritten by the next attempt otherwise. Both have the
	// gradient vector's length; nil without error feedback. seed, when not
	// nil, says the replica holds the snapshot of the step the coordinator
	// resumed from and has not committed since: the attempts from that step
	// start from the seed the coordinator serves (Worker.seedResidual).
	resid, staged     []float32
	stagedAt, residAt *attemptID
	seed              *seedInfo

	// seeds (the coordinator's) are the residuals of the checkpoint it
	// resumed from; nil for none.
	seeds *residSeeds
}

// attemptID names an attempt (its epoch and step) and this worker's place
// in its ring (rank of world).
type attemptID struct {
	epoch, step uint64
	rank, world int
}

// is reports whether a is attempt (epoch, step).
func (a *attemptID) is(epoch, step uint64) bool {
	return a != nil && a.epoch == epoch && a.step == step
}

// resetResidual forgets the error-feedback residuals: after a snapshot was
// loaded or in another run, what this worker's rounding lost no longer
// belongs to the parameters it holds.
func (j *jobState) resetResidual() {
	clear(j.resid)
	clear(j.staged)
	j.stagedAt, j.residAt, j.seed = nil, nil, nil
}

// openJob builds the coordinator's master state from the configuration: the
// newest checkpoint in run.dir if there is one, else model.init, else a fresh
// initialisation. It writes nothing.
func openJob(cfg config.Config, env *Env, log *slog.Logger) (*jobState, bool, error) {
	if env == nil {
		env = NewEnv(cfg.Cluster.Threads)
	}
	if env.CacheDir == "" {
		env.CacheDir = cfg.Data.CacheDir
		if env.CacheDir == "" {
			env.CacheDir = filepath.Join(cfg.Run.Dir, "tokens")
		}
	}
	if env.Log == nil {
		env.Log = log
	}
	// The data fixes the vocabulary; the model fixes the context.
	spec := JobSpec{
		DataSource: cfg.Data.Source, ValFraction: cfg.Data.ValFraction, DataSeed: cfg.Data.Seed, Tokenizer: cfg.Data.Tokenizer,
		Direction: cfg.Loss.Direction.String(), Target: cfg.Loss.Target.String(), Beta: cfg.Loss.Beta,
		Temperature: cfg.Loss.Temperature, Smoothing: cfg.Loss.LabelSmoothing,
		Teacher: cfg.Loss.Teacher, TeacherStore: cfg.Loss.TeacherStore, TeacherTemperature: cfg.Loss.LossOptions().TeacherTemperature,
		ScaleT2: cfg.Loss.ScaleT2, HardWeight: cfg.Loss.HardWeight, TeacherTopK: cfg.Loss.TeacherTopK,
		TeacherTail: cfg.Loss.TeacherTail.String(),
		OnPolicy:    cfg.Loss.OnPolicy, OnPolicyPrefix: cfg.Loss.OnPolicyPrefix, OnPolicyTemp: cfg.Loss.OnPolicyTemp, Seed: cfg.Train.Seed,
		Optimizer: cfg.Train.Optimizer, WeightDecay: cfg.Train.WeightDecay, GradClip: cfg.Train.GradClip,
		BatchWindows: cfg.Train.BatchWindows, MicroWindows: cfg.Train.MicroWindows, ChunkBytes: cfg.AllReduce.ChunkBytes,
		ARDeadline: cfg.AllReduce.Deadline, Heartbeat: cfg.Cluster.Heartbeat,
		Wire: cfg.AllReduce.Wire, ErrorFeedback: cfg.AllReduce.ErrorFeedback, BucketBytes: cfg.AllReduce.BucketBytes,
	}
	ld, err := loadNewestCheckpoint(cfg.Run.Dir, env.Pool, log)
	if err != nil {
		return nil, false, err
	}
	model, state, ckpt := ld.model, ld.state, ld.dir
	resumed := ckpt != ""
	switch {
	case resumed:
		if err := checkResume(cfg, model.Config, state.Step, ckpt); err != nil {
			return nil, false, err
		}
		// The checkpoint's padding is the layout of its optimizer state
		// and of the replicas' flat vectors: a resumed run keeps it.
		if p := model.Config.VocabPad; max(p, 1) != max(cfg.Model.VocabPad, 1) {
			log.Warn("model.vocab_pad differs from the checkpoint's, which the resumed run keeps", "model.vocab_pad", cfg.Model.VocabPad, "checkpoint", p, "dir", ckpt)
		}
	case cfg.Model.Init != "":
		model, _, err = lm.LoadCheckpoint(cfg.Model.Init, env.Pool)
		if err != nil {
			return nil, false, fmt.Errorf("model.init %s: %w", cfg.Model.Init, err)
		}
		// The folder fixes the model: a shape also set in cfg must be its.
		if err := checkShape(cfg.Model, lm.Config{}, model.Config, "model.init "+cfg.Model.Init); err != nil {
			return nil, false, err
		}
		// A Hugging Face folder holds V rows: pad them as the run says.
		if model, err = model.WithVocabPad(cfg.Model.VocabPad); err != nil {
			return nil, false, fmt.Errorf("model.init %s: model.vocab_pad: %w", cfg.Model.Init, err)
		}
	}
	if err := checkTokenizers(cfg); err != nil {
		return nil, false, err
	}
	ctx := 0
	if model != nil {
		ctx = model.Config.Ctx
		if cfg.Model.Ctx > 0 && cfg.Model.Ctx != ctx && !resumed {
			return nil, false, fmt.Errorf("model.ctx = %d, but model.init %s has context %d", cfg.Model.Ctx, cfg.Model.Init, ctx)
		}
	} else {
		mc, err := modelConfig(cfg.Model, 1)
		if err != nil {
			return nil, false, err
		}
		ctx = mc.Ctx
	}
	spec.Model.Ctx = ctx
	data, err := env.dataset(dataRequest(spec))
	if err != nil {
		return nil, false, fmt.Errorf("data.source %s: %w", cfg.Data.Source, err)
	}
	if strings.HasPrefix(cfg.Data.Source, "tokens:") && cfg.Data.Tokenizer == "bytes" && data.Vocab() > 256 {
		log.Warn("data.tokenizer is bytes, but the token file holds ids above 255: samples print them as ids and bits per byte takes each token for one byte; set data.tokenizer gpt2 if they are GPT-2's",
			"data.source", cfg.Data.Source, "vocab", data.Vocab())
	}
	if model != nil {
		if model.Config.Vocab < data.Vocab() {
			return nil, false, fmt.Errorf("the model's vocabulary %d is smaller than the data's %d", model.Config.Vocab, data.Vocab())
		}
		spec.Model = model.Config
	} else {
		mc, err := modelConfig(cfg.Model, data.Vocab())
		if err != nil {
			return nil, false, err
		}
		spec.Model = mc
		model, err = lm.New(mc, env.Pool)
		if err != nil {
			return nil, false, fmt.Errorf("building the model: %w", err)
		}
		model.Init(cfg.Train.Seed)
	}
	if data.NumTrain() < 1 {
		return nil, false, fmt.Errorf("data.source %s: no training windows of %d tokens", cfg.Data.Source, ctx+1)
	}
	if spec.Teacher != "" {
		t, err := env.teacher(spec.Teacher)
		if err != nil {
			return nil, false, fmt.Errorf("loss.teacher: %w", err)
		}
		spec.TeacherSHA256 = t.sha
		if k := cfg.Loss.TeacherTopK; k > t.cfg.Vocab {
			return nil, false, fmt.Errorf("%w: loss.teacher_top_k = %d: the teacher %s has a vocabulary of %d (0 keeps every token)", config.ErrInvalid, k, spec.Teacher, t.cfg.Vocab)
		}
		if cfg.Loss.HardWeight == 1 {
			log.Warn("loss.hard_weight = 1 gives the divergence to the teacher no weight: the teacher's forward passes are computed for nothing", "loss.teacher", spec.Teacher)
		}
	}
	if n := cfg.Run.SampleKLWindows; n > 0 && !data.HasTruth() {
		return nil, false, fmt.Errorf("%w: run.sample_kl_windows = %d: it scores the model's samples against the synthetic data's known distribution, and data.source %s has none", config.ErrInvalid, n, cfg.Data.Source)
	}
	if spec.TeacherStore != "" {
		st, err := env.teacherStore(spec.TeacherStore)
		if err != nil {
			return nil, false, fmt.Errorf("loss.teacher_store: %w", err)
		}
		want := teacherstore.Header{Data: teacherstore.DataKey(data.Fingerprint()), Vocab: spec.Model.Vocab, Ctx: spec.Model.Ctx,
			Temperature: spec.TeacherTemperature}
		if err := st.Check(want); err != nil {
			return nil, false, fmt.Errorf("loss.teacher_store %s does not fit this job: %w", spec.TeacherStore, err)
		}
		if st.Header().Dtype == teacherstore.Float16 && cfg.Loss.LossOptions().NeedsPositiveTarget() {
			return nil, false, fmt.Errorf("%w: loss.teacher_store %s keeps float16 probabilities, which round those below 6e-8 to 0, and reverse KL against a target with zeros is infinite: set loss.label_smoothing, or dump the store with teacher-dump --dtype float32",
				config.ErrInvalid, spec.TeacherStore)
		}
		if k := cfg.Loss.TeacherTopK; k > st.K() {
			return nil, false, fmt.Errorf("loss.teacher_top_k = %d: the teacher store %s keeps only the top %d", k, spec.TeacherStore, st.K())
		}
		if lo := cfg.Loss.LossOptions(); lo.TeacherTopK == 0 && st.K() < spec.Model.Vocab {
			lo.TeacherTopK = st.K() // the store's rows are a top k: their tail applies
			if err := lo.CheckTeacher(); err != nil {
				return nil, false, fmt.Errorf("loss.teacher_store %s keeps the top %d of %d tokens: %w", spec.TeacherStore, st.K(), spec.Model.Vocab, err)
			}
		}
		spec.TeacherStoreHeader, spec.TeacherStoreDigest = st.Header(), st.Digest()
	}
	if err := resolveTarget(&spec, data); err != nil {
		return nil, false, err
	}
	if cfg.Train.BatchWindows > data.NumTrain() {
		return nil, false, fmt.Errorf("train.batch_windows = %d: data.source %s has only %d training windows of %d tokens", cfg.Train.BatchWindows, cfg.Data.Source, data.NumTrain(), ctx+1)
	}
	spec.Data = data.Fingerprint()
	if resumed {
		if err := checkResumeSpec(cfg.Run.Dir, spec, ckpt, log); err != nil {
			return nil, false, err
		}
	}
	// The coordinator computes no gradient: its engine evaluates, a few
	// windows at a time, so its activations stay small.
	j, err := newJobState(spec, env, model, data, evalWindows)
	if err != nil {
		return nil, false, err
	}
	j.sched = lm.Schedule{Kind: cfg.Train.Schedule, Base: cfg.Train.LR, Min: cfg.Train.MinLR,
		WarmupSteps: int64(cfg.Train.WarmupSteps), TotalSteps: int64(cfg.Train.Steps)}
	if j.sched.Kind == "cosine" && j.sched.TotalSteps <= j.sched.WarmupSteps {
		j.sched.WarmupSteps = 0
	}
	if err := j.sched.Validate(); err != nil {
		return nil, false, fmt.Errorf("train: %w", err)
	}
	j.rng = cfg.Train.Seed
	j.initialised = true
	if resumed {
		j.step = uint64(state.Step)
		j.startStep = j.step
		j.rng = state.RNG
		if err := j.restoreDataState(state.Data, ckpt); err != nil {
			return nil, false, err
		}
		if j.adam != nil {
			if state.Adam == nil {
				return nil, false, fmt.Errorf("resuming from %s: no AdamW moments for train.optimizer adamw", ckpt)
			}
			j.adam.State.T = state.Adam.T
			copy(j.adam.State.M, state.Adam.M)
			copy(j.adam.State.V, state.Adam.V)
		}
		j.takeResiduals(ld.resid, ckpt, log)
		j.damaged = ld.skipped
	}
	return j, resumed, nil
}

// checkTokenizers refuses text or token-file data under another tokenizer
// than the one model.init's or loss.teacher's folder was trained with (its
// tokenizer_config.json): their ids would mean other tokens.
func checkTokenizers(cfg config.Config) error {
	if strings.HasPrefix(cfg.Data.Source, "synthetic") {
		return nil
	}
	for _, f := range [][2]string{{"model.init", cfg.Model.Init}, {"loss.teacher", cfg.Loss.Teacher}} {
		if f[1] == "" {
			continue
		}
		tok, err := engine.ReadTokenizer(f[1])
		if err != nil {
			return fmt.Errorf("%s %s: %w", f[0], f[1], err)
		}
		if tok != "" && tok != cfg.Data.Tokenizer {
			return fmt.Errorf("%w: data.tokenizer = %s, but %s %s was trained with the %s tokenizer (its %s): its ids would mean other tokens; set data.tokenizer %s",
				config.ErrInvalid, cfg.Data.Tokenizer, f[0], f[1], tok, engine.TokenizerFile, tok)
		}
	}
	return nil
}

// CheckJob opens the job cfg describes as a coordinator would before its
// first step (the data, the model or model.init, the teacher or teacher
// store, and whether they fit), without training. It writes nothing into
// run.dir: text data is tokenized into data.cache_dir, or into a
// temporary folder removed on return.
func CheckJob(cfg config.Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	env := NewEnv(cfg.Cluster.Threads)
	if cfg.Data.CacheDir == "" {
		tmp, err := os.MkdirTemp("", "klring-check-")
		if err != nil {
			return fmt.Errorf("checking the job: %w", err)
		}
		defer os.RemoveAll(tmp)
		env.CacheDir = tmp
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_, _, err := openJob(cfg, env, log)
	return err
}

// takeResiduals keeps a checkpoint's error-feedback residuals as the seeds
// the coordinator serves, when the job feeds errors back.
func (j *jobState) takeResiduals(ranks [][]float32, ckpt string, log *slog.Logger) {
	switch {
	case ranks != nil && j.spec.ErrorFeedback:
		j.seeds = newResidSeeds(j.step, ranks)
		log.Info("resuming error feedback from the checkpoint's residuals", "dir", ckpt, "ranks", len(ranks))
	case ranks != nil:
		log.Info("the checkpoint's error-feedback residuals are not used: allreduce.error_feedback is off", "dir", ckpt)
	case j.spec.ErrorFeedback:
		log.Warn("the checkpoint holds no error-feedback residuals: error feedback starts from zero", "dir", ckpt)
	}
}

// resolveTarget turns loss.target auto into hard or soft and checks that
// the loss is finite with it.
func resolveTarget(spec *JobSpec, data *shard.Dataset) error {
	t, err := engine.ParseTarget(spec.Target)
	if err != nil {
		return err
	}
	if t, err = engine.Resolve(t, data, spec.hasTeacher()); err != nil {
		return err
	}
	spec.Target = t.String()
	o, err := engineOptions(*spec)
	if err != nil {
		return err
	}
	return o.Validate()
}

// engineOptions are the engine's options of a job (without its teacher
// model and token sizes, which come from the Env).
func engineOptions(spec JobSpec) (engine.Options, error) {
	lo := loss.DefaultOptions()
	var err error
	if lo.Direction, err = loss.ParseDirection(spec.Direction); err != nil {
		return engine.Options{}, err
	}
	t, err := engine.ParseTarget(spec.Target)
	if err != nil {
		return engine.Options{}, err
	}
	lo.Beta, lo.Temperature, lo.LabelSmoothing = spec.Beta, spec.Temperature, spec.Smoothing
	lo.TeacherTemperature = spec.TeacherTemperature
	if lo.TeacherTemperature == 0 {
		lo.TeacherTemperature = spec.Temperature
	}
	lo.ScaleT2, lo.HardWeight = spec.ScaleT2, spec.HardWeight
	if t == engine.TargetTeacher {
		lo.TeacherTopK = spec.TeacherTopK
		if lo.TeacherTail, err = loss.ParseTail(spec.TeacherTail); err != nil {
			return engine.Options{}, err
		}
	}
	o := engine.Options{Loss: lo, Target: t, MaxWindows: max(spec.BatchWindows, 1),
		OnPolicy: engine.OnPolicy{Fraction: spec.OnPolicy, Prefix: spec.OnPolicyPrefix, Temperature: spec.OnPolicyTemp, Seed: spec.Seed}}
	switch {
	// Stand-ins, so that Validate checks the combination; the engine gets
	// the real ones from the Env.
	case t == engine.TargetTeacher && spec.TeacherStore != "":
		o.Store = &teacherstore.Store{}
	case t == engine.TargetTeacher:
		o.Teacher = &lm.Model{}
	}
	return o, nil
}

// newWorkerJob builds a worker's replica from the spec the coordinator sent.
// Its parameters are loaded from a snapshot before its first step.
func newWorkerJob(spec JobSpec, env *Env) (*jobState, error) {
	if err := spec.Model.Validate(); err != nil {
		return nil, fmt.Errorf("job spec: %w", err)
	}
	data, err := env.dataset(dataRequest(spec))
	if err != nil {
		return nil, fmt.Errorf("data.source %s: %w", spec.DataSource, err)
	}
	if d := spec.Data.Diff(data.Fingerprint()); d != "" {
		return nil, fmt.Errorf("this worker's data.source %s is not the coordinator's (coordinator's, this worker's): %s", spec.DataSource, d)
	}
	if _, err := env.jobStore(spec); err != nil {
		return nil, err
	}
	if spec.Teacher != "" {
		t, err := env.teacher(spec.Teacher)
		if err != nil {
			return nil, fmt.Errorf("the job's teacher: %w", err)
		}
		if t.sha != spec.TeacherSHA256 {
			return nil, fmt.Errorf("this worker's teacher %s has weights of SHA-256 %s, the coordinator's %s: it is another teacher", spec.Teacher, t.sha, spec.TeacherSHA256)
		}
	}
	model, err := lm.New(spec.Model, env.Pool)
	if err != nil {
		return nil, err
	}
	j, err := newJobState(spec, env, model, data, spec.passWindows())
	if err != nil {
		return nil, err
	}
	if spec.ErrorFeedback {
		n := model.Config.NumParams() + 2
		j.resid, j.staged = make([]float32, n), make([]float32, n)
	}
	return j, nil
}

// passWindows is the most windows a worker's engine takes in one pass: a
// micro-batch, or at most the whole batch (the shard of a lone worker).
func (s JobSpec) passWindows() int {
	if s.MicroWindows > 0 {
		return min(s.MicroWindows, max(s.BatchWindows, 1))
	}
	return max(s.BatchWindows, 1)
}

// newJobState builds a replica whose engine takes up to maxWindows windows
// at a time (a worker's shard; the coordinator's evaluation batches).
func newJobState(spec JobSpec, env *Env, model *lm.Model, data *shard.Dataset, maxWindows int) (*jobState, error) {
	j := &jobState{spec: spec, env: env, model: model, data: data}
	switch spec.Optimizer {
	case "sgd":
		j.opt = lm.NewSGD(env.Pool)
	default:
		o := lm.DefaultAdamWOptions()
		o.WeightDecay = spec.WeightDecay
		a, err := lm.NewAdamW(model.Layout(), o, env.Pool)
		if err != nil {
			return nil, err
		}
		j.opt, j.adam = a, a
	}
	o, err := engineOptions(spec)
	if err != nil {
		return nil, err
	}
	o.MaxWindows = maxWindows
	if o.TokenBytes, err = env.tokenBytes(spec); err != nil {
		return nil, err
	}
	if o.Teacher, err = env.teacherModel(spec); err != nil {
		return nil, err
	}
	if o.Store, err = env.jobStore(spec); err != nil {
		return nil, err
	}
	if j.eng, err = engine.New(o, model, data, env.Pool); err != nil {
		return nil, err
	}
	return j, nil
}

// evalWindows is how many windows an evaluation computes at once.
const evalWindows = 2

// dataState is what the cluster records in a checkpoint's trainer state
// (lm's opaque data): the position in the data and what the data was, and
// the workers' error-feedback residuals' file (ResidualFile), if any.
type dataState struct {
	Cursor   shard.Cursor       `json:"cursor"`
	Data     *shard.Fingerprint `json:"data,omitempty"`
	Residual *residualRecord    `json:"residual,omitempty"`
}

// restoreDataState takes the data cursor from a checkpoint's trainer state
// and refuses to resume on other data than the checkpoint's, naming every
// difference.
func (j *jobState) restoreDataState(raw []byte, ckpt string) error {
	if len(raw) == 0 {
		return nil
	}
	var ds dataState
	if err := json.Unmarshal(raw, &ds); err != nil {
		return fmt.Errorf("resuming from %s: data state: %w", ckpt, err)
	}
	if ds.Data == nil {
		// An earlier format: the cursor alone.
		if err := json.Unmarshal(raw, &ds.Cursor); err != nil {
			return fmt.Errorf("resuming from %s: data cursor: %w", ckpt, err)
		}
	} else if d := ds.Data.Diff(j.data.Fingerprint()); d != "" {
		return fmt.Errorf("resuming from %s: the data is not the checkpoint's (checkpoint's, now): %s; resume with the settings it was trained with, or start a new run.dir", ckpt, d)
	}
	if err := j.data.CheckCursor(ds.Cursor); err != nil {
		return fmt.Errorf("resuming from %s: the data cursor does not fit data.source %s: %w", ckpt, j.spec.DataSource, err)
	}
	j.cursor = ds.Cursor
	return nil
}

// lr is the learning rate of step s (from 1).
func (j *jobState) lr(s uint64) float64 { return j.sched.LR(int64(s) - 1) }

// lossIsKLToTruth says whether the training loss is exactly the KL divergence
// from the true distribution (forward KL on the synthetic source's truth).
func (j *jobState) lossIsKLToTruth() bool {
	s := j.spec
	return s.Target == "soft" && s.Direction == "forward" && s.Temperature == 1 && s.Smoothing == 0 && !s.ScaleT2 && s.HardWeight == 0
}

// finishGradient divides the summed gradient by the global token count that
// rides in its last slot and returns the loss sum and the token count. Every
// replica calls it on bit-identical input, so every replica gets the same bits.
func finishGradient(g []float32) (lossSum, tokens float64) {
	n := len(g) - 2
	lossSum, tokens = float64(g[n]), float64(g[n+1])
	if tokens <= 0 {
		return lossSum, tokens
	}
	// One rounding of g*inv on every path of ScaleShift (AVX-512, AVX2 and
	// Go), so replicas on different CPUs agree; a zero comes out +0.
	kernels.ScaleShift(g[:n], float32(1/tokens), 0)
	return lossSum, tokens
}

// apply clips the averaged gradient and takes one optimizer step (AdamW in
// one pass, lm.AdamW.StepClip: the same bits as ClipGradNorm then Step). It
// returns the gradient norm before clipping; a non-finite norm takes no step. The coordinator commits only gradients
// whose norm is finite (gradNorm), so every replica applies finite updates.
func (j *jobState) apply(g []float32, lr float32) float64 {
	if a, ok := j.opt.(*lm.AdamW); ok {
		return a.StepClip(j.model.Params, g, float64(lr), j.spec.GradClip)
	}
	norm := lm.ClipGradNorm(g, j.spec.GradClip)
	j.opt.Step(j.model.Params, g, float64(lr))
	return norm
}

// finiteGradient reports whether the averaged gradient and its loss are
// finite: one pass over every parameter's gradient.
func finiteGradient(g []float32) bool {
	if len(g) == 0 {
		return true
	}
	// One vectorised pass (a scalar sum of v*0 was a chain of dependent
	// adds, a millisecond per replica's gradient): a NaN makes the sum NaN,
	// an infinity is the largest or the smallest element.
	mx, mn, sum := kernels.MaxMinSum(g)
	return !math.IsNaN(sum) && mx <= math.MaxFloat32 && mn >= -math.MaxFloat32
}

// checksum is the checksum of the parameters' bits.
func (j *jobState) checksum() uint64 { return checksum(j.model.Params) }

// checksum is XXH64 of the floats' little-endian bits: on little-endian
// hosts straight over their memory (10+ GB/s), elsewhere through a buffer.
func checksum(p []float32) uint64 {
	if len(p) == 0 {
		return xxhash.Sum64(nil)
	}
	if littleEndian {
		return xxhash.Sum64(unsafe.Slice((*byte)(unsafe.Pointer(&p[0])), 4*len(p)))
	}
	h := xxhash.New()
	writeFloats(h, p)
	return h.Sum64()
}

// partDigest is the digest of one Segment message, the float offset off and
// the little-endian float32 bytes data: XXH64 of off as 8 little-endian
// bytes followed by data. A segment's seg_sum is the sum, modulo 2^64, of
// its messages' digests: each float is sent once, so the sum does not depend
// on the order the messages arrive in, and both ends take it as the bytes
// go by (the owner as it sends them, the coordinator as it stores them).
func partDigest(h *xxhash.Digest, off int, data []byte) uint64 {
	var o [8]byte
	binary.LittleEndian.PutUint64(o[:], uint64(off))
	h.Reset()
	h.Write(o[:])
	h.Write(data)
	return h.Sum64()
}

// segmentSums checks an attempt's segments as the coordinator stores them:
// the seg_sum of each segment so far, and whether every float of the
// gradient stored so far is finite.
type segmentSums struct {
	plan   allreduce.Plan
	sums   []uint64 // by segment
	finite bool
	h      *xxhash.Digest
}

// reset starts the checks of an attempt under plan.
func (s *segmentSums) reset(plan allreduce.Plan) {
	s.plan, s.finite = plan, true
	if cap(s.sums) < plan.N {
		s.sums = make([]uint64, plan.N)
	}
	s.sums = s.sums[:plan.N]
	clear(s.sums)
	if s.h == nil {
		s.h = xxhash.New()
	}
}

// add takes the message at float offset off, stored as x, of bytes data;
// floats from exact on (the loss sum and token count) are checked at the
// commit, not here. The protocol has checked that the message lies inside
// one stripe of its sender's segment.
func (s *segmentSums) add(off int, x []float32, data []byte, exact int) {
	if len(s.sums) == 0 || s.plan.Stripe <= 0 {
		return
	}
	s.sums[(off/s.plan.Stripe)%s.plan.N] += partDigest(s.h, off, data)
	if hi := min(len(x), exact-off); hi > 0 && !finiteGradient(x[:hi]) {
		s.finite = false
	}
}

// writeFloats writes the floats' little-endian bits into h.
func writeFloats(h *xxhash.Digest, p []float32) {
	if littleEndian && len(p) > 0 {
		h.Write(unsafe.Slice((*byte)(unsafe.Pointer(&p[0])), 4*len(p)))
		return
	}
	var buf [4096]byte
	for len(p) > 0 {
		n := min(len(p), len(buf)/4)
		for i, v := range p[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		h.Write(buf[:4*n])
		p = p[n:]
	}
}

// littleEndian reports the host's byte order.
var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

func (j *jobState) optStep() int {
	if j.adam != nil {
		return int(j.adam.State.T)
	}
	return 0
}

// snapshotBytes is the size of a snapshot: the parameters, then AdamW's m and v.
func (j *jobState) snapshotBytes() int {
	n := len(j.model.Params)
	if j.adam != nil {
		n *= 3
	}
	return 4 * n
}

// snapshot appends the replica's state to dst.
func (j *jobState) snapshot(dst []byte) []byte {
	return j.snapshotRange(dst, 0, j.snapshotBytes())
}

// snapshotRange appends bytes [off, off+n) of the snapshot to dst, encoded
// from the live buffers: a snapshot is served chunk by chunk with no copy
// of its size. off and n are multiples of 4 (n may end the snapshot).
func (j *jobState) snapshotRange(dst []byte, off, n int) []byte {
	bufs := [][]float32{j.model.Params}
	if j.adam != nil {
		bufs = append(bufs, j.adam.State.M, j.adam.State.V)
	}
	i, left := off/4, (n+3)/4
	for _, p := range bufs {
		if i >= len(p) {
			i -= len(p)
			continue
		}
		k := min(len(p)-i, left)
		for _, v := range p[i : i+k] {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
		}
		left, i = left-k, 0
		if left == 0 {
			break
		}
	}
	return dst
}

// restore loads a snapshot made by snapshot.
func (j *jobState) restore(b []byte, optStep int) error {
	if len(b) != j.snapshotBytes() {
		return fmt.Errorf("snapshot of %d bytes, want %d", len(b), j.snapshotBytes())
	}
	if err := j.restoreChunk(0, b); err != nil {
		return err
	}
	if j.adam != nil {
		j.adam.State.T = int64(optStep)
	}
	return nil
}

// restoreChunk writes bytes [off, off+len(b)) of a snapshot (the
// parameters, then AdamW's m and v) into the replica: a snapshot is loaded
// chunk by chunk as it arrives, with no buffer of its size. off and len(b)
// are multiples of 4 within the snapshot.
func (j *jobState) restoreChunk(off int, b []byte) error {
	if off%4 != 0 || len(b)%4 != 0 || off < 0 || off > j.snapshotBytes()-len(b) {
		return fmt.Errorf("snapshot bytes [%d, +%d) outside the %d-byte snapshot, or not whole floats", off, len(b), j.snapshotBytes())
	}
	bufs := [][]float32{j.model.Params}
	if j.adam != nil {
		bufs = append(bufs, j.adam.State.M, j.adam.State.V)
	}
	i := off / 4
	for _, p := range bufs {
		if i >= len(p) {
			i -= len(p)
			continue
		}
		n := min(len(p)-i, len(b)/4)
		for k := range n {
			p[i+k] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
		}
		b, i = b[4*n:], 0
		if len(b) == 0 {
			break
		}
	}
	return nil
}

// save writes a checkpoint of the committed state into
// runDir/checkpoints/step-N and removes all but the newest keep. It writes a
// temporary folder first and renames it into place, so a crash leaves either
// no step-N or a whole one.
// resid, when not nil, gathers the workers' error-feedback residuals of the
// step (residCollector.gather).
func (j *jobState) save(runDir string, keep int, resid func(uint64) [][]float32) (string, error) {
	snap, err := j.checkpointState(nil)
	if err != nil {
		return "", err
	}
	snap.resid = resid
	return snap.write(runDir, keep)
}

// ckptState is a copy of what a checkpoint holds, taken at a step boundary
// so that it can be written while the master copy moves on.
type ckptState struct {
	step      uint64
	model     *lm.Model
	st        *lm.TrainerState
	data      dataState // st.Data, once the residuals are known
	tokenizer string    // written beside the model when the data is text
	// ready, when not nil, is closed once the step's metrics line is
	// written: the checkpoint is renamed into place only then.
	ready <-chan struct{}
	// resid, when not nil, gathers the workers' error-feedback residuals
	// of the step (residCollector.gather, which waits a bounded time).
	resid func(step uint64) [][]float32
}

// checkpointState copies the committed state into into (allocated when nil
// or of another shape) and returns it.
func (j *jobState) checkpointState(into *ckptState) (*ckptState, error) {
	if into == nil || into.model.Config != j.model.Config {
		m, err := lm.New(j.model.Config, j.env.Pool)
		if err != nil {
			return nil, err
		}
		into = &ckptState{model: m, st: &lm.TrainerState{}}
		if j.adam != nil {
			n := len(j.model.Params)
			into.st.Adam = &lm.AdamState{M: make([]float32, n), V: make([]float32, n)}
		}
	}
	fp := j.data.Fingerprint()
	into.data = dataState{Cursor: j.cursor, Data: &fp}
	copy(into.model.Params, j.model.Params)
	into.step = j.step
	if tb, _ := j.env.tokenBytes(j.spec); tb != nil {
		into.tokenizer = j.spec.Tokenizer
		if into.tokenizer == "" {
			into.tokenizer = tokenizer.NameBytes
		}
	}
	into.st.Step, into.st.RNG = int64(j.step), j.rng
	if j.adam != nil {
		into.st.Adam.T = j.adam.State.T
		copy(into.st.Adam.M, j.adam.State.M)
		copy(into.st.Adam.V, j.adam.State.V)
	}
	return into, nil
}

// write saves the copy into runDir/checkpoints/step-N and removes all but
// the newest keep. It writes a temporary folder first and renames it into
// place, so a crash leaves either no step-N or a whole one.
func (c *ckptState) write(runDir string, keep int) (string, error) {
	root := filepath.Join(runDir, "checkpoints")
	dir := filepath.Join(root, checkpointName(c.step))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("saving checkpoint of step %d: %w", c.step, err)
	}
	tmp, err := os.MkdirTemp(root, ".tmp-"+checkpointName(c.step)+"-")
	if err != nil {
		return "", fmt.Errorf("saving checkpoint of step %d: %w", c.step, err)
	}
	defer os.RemoveAll(tmp)
	if err := c.writeFiles(tmp); err != nil {
		return "", fmt.Errorf("saving checkpoint of step %d: %w", c.step, err)
	}
	if c.ready != nil {
		<-c.ready
	}
	if err := os.RemoveAll(dir); err != nil { // an earlier incarnation's step-N
		return "", fmt.Errorf("saving checkpoint of step %d: %w", c.step, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("saving checkpoint of step %d: %w", c.step, err)
	}
	syncDir(root)
	all, err := listCheckpoints(runDir)
	if err != nil {
		return dir, err
	}
	for len(all) > keep {
		if err := os.RemoveAll(all[0].dir); err != nil {
			return dir, fmt.Errorf("removing old checkpoint: %w", err)
		}
		all = all[1:]
	}
	return dir, nil
}

// writeFiles writes the checkpoint's files into dir: the workers'
// residuals first (they may take a while to come), then lm's files, whose
// trainer state records the residuals' digest, and the tokenizer's.
func (c *ckptState) writeFiles(dir string) error {
	c.data.Residual = nil
	if c.resid != nil {
		if ranks := c.resid(c.step); ranks != nil {
			rec, err := writeResiduals(dir, ranks, c.step)
			if err != nil {
				return err
			}
			c.data.Residual = rec
		}
	}
	data, err := json.Marshal(c.data)
	if err != nil {
		return err
	}
	c.st.Data = data
	if err := lm.SaveCheckpoint(dir, c.model, c.st); err != nil {
		return err
	}
	if c.tokenizer != "" {
		return engine.WriteTokenizerConfig(dir, c.tokenizer, c.model.Config.Ctx)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// checkpointName is the folder of step s: step-NNNNNN, wider past 999999.
func checkpointName(s uint64) string { return fmt.Sprintf("step-%06d", s) }

type checkpointDir struct {
	step uint64
	dir  string
}

// listCheckpoints returns runDir/checkpoints/step-N folders, oldest first by
// step number (not by name: step-1000000 comes after step-999999). Temporary
// folders of an interrupted save are not listed.
func listCheckpoints(runDir string) ([]checkpointDir, error) {
	root := filepath.Join(runDir, "checkpoints")
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing checkpoints: %w", err)
	}
	var dirs []checkpointDir
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "step-")
		if !e.IsDir() || !ok {
			continue
		}
		s, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			continue
		}
		dirs = append(dirs, checkpointDir{s, filepath.Join(root, e.Name())})
	}
	sort.Slice(dirs, func(a, b int) bool { return dirs[a].step < dirs[b].step })
	return dirs, nil
}

// loadedCheckpoint is a checkpoint loaded to resume from.
type loadedCheckpoint struct {
	model *lm.Model
	state *lm.TrainerState
	dir   string      // "" when there is none
	resid [][]float32 // the workers' error-feedback residuals by rank; nil for none
	// skipped are the newer checkpoints that do not verify: the resumed
	// run trains their steps again, and moves them aside (moveDamaged).
	skipped []string
}

// loadNewestCheckpoint loads the newest checkpoint of runDir that verifies:
// one that is missing a file, truncated, or fails its digests (its
// residuals' too) is skipped, and the log says which and why. Its dir is ""
// when there is none.
func loadNewestCheckpoint(runDir string, pool *kernels.Pool, log *slog.Logger) (loadedCheckpoint, error) {
	all, err := listCheckpoints(runDir)
	if err != nil {
		return loadedCheckpoint{}, err
	}
	var newest error
	var skipped []string
	for i := len(all) - 1; i >= 0; i-- {
		c := all[i]
		m, st, err := lm.LoadCheckpoint(c.dir, pool)
		if err == nil && st == nil {
			err = fmt.Errorf("no %s", lm.TrainerStateFile)
		}
		if err == nil && uint64(st.Step) != c.step {
			err = fmt.Errorf("it holds step %d", st.Step)
		}
		var resid [][]float32
		if err == nil {
			resid, err = checkpointResiduals(c.dir, st.Data, m.Config.NumParams()+2)
		}
		if err != nil {
			log.Warn("skipping a checkpoint that does not verify", "dir", c.dir, "err", err.Error())
			if newest == nil {
				newest = fmt.Errorf("%s: %w", c.dir, err)
			}
			skipped = append(skipped, c.dir)
			continue
		}
		return loadedCheckpoint{model: m, state: st, dir: c.dir, resid: resid, skipped: skipped}, nil
	}
	if newest != nil {
		// Starting again from step 0 would overwrite the run's checkpoints,
		// metrics and ledger: that is the user's call, not ours.
		return loadedCheckpoint{}, fmt.Errorf("%w: run.dir %s has %d checkpoints and none verifies (the newest, %v); move them aside to start the run again, or choose another run.dir",
			ErrNoCheckpoint, runDir, len(all), newest)
	}
	return loadedCheckpoint{}, nil
}

// moveDamaged renames the checkpoints a resume skipped because they do not
// verify to damaged-step-N (damaged-step-N.2, ... if taken) beside the
// others: kept for a look, out of the way of run.keep's count and of
// Verify, and of the checkpoints of the steps trained again.
func moveDamaged(dirs []string, log *slog.Logger) error {
	for _, d := range dirs {
		to := filepath.Join(filepath.Dir(d), "damaged-"+filepath.Base(d))
		for i := 2; ; i++ {
			if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
				break
			}
			to = fmt.Sprintf("%s.%d", filepath.Join(filepath.Dir(d), "damaged-"+filepath.Base(d)), i)
		}
		if err := os.Rename(d, to); err != nil {
			return fmt.Errorf("moving aside the checkpoint that does not verify: %w", err)
		}
		log.Warn("moved aside a checkpoint that does not verify; the resumed run trains its step again", "from", d, "to", to)
	}
	return nil
}

// ErrRunDirBusy is wrapped when another coordinator holds run.dir.
var ErrRunDirBusy = errors.New("cluster: run.dir in use")

// lockFile is the file in run.dir that a running coordinator locks.
const lockFile = "coordinator.lock"

// ErrNoCheckpoint is wrapped when a run directory holds checkpoints but
// none of them verifies: the run does not start again over them.
var ErrNoCheckpoint = errors.New("cluster: no checkpoint to resume from")

// checkResume checks that the settings of a resumed run agree with its
// checkpoint at dir: its step is within train.steps, and the model's shape
// set in cfg (explicitly, or by its preset when there is no model.init) is
// the checkpoint's, which a resumed run keeps.
func checkResume(cfg config.Config, ckpt lm.Config, step int64, dir string) error {
	if step > int64(cfg.Train.Steps) {
		return fmt.Errorf("%w: train.steps = %d, but the checkpoint %s is at step %d: set train.steps to at least %d to go on, or choose another run.dir",
			config.ErrInvalid, cfg.Train.Steps, dir, step, step)
	}
	var preset lm.Config // zero: no preset gives the shape
	if cfg.Model.Init == "" && cfg.Model.Preset != "custom" {
		preset, _ = lm.Preset(cfg.Model.Preset)
	}
	if err := checkShape(cfg.Model, preset, ckpt, "the checkpoint "+dir); err != nil {
		return fmt.Errorf("%w: a resumed run keeps its checkpoint's model; choose another run.dir for a new one", err)
	}
	return nil
}

// checkResumeSpec checks that a resumed run trains toward what the run in
// runDir was started with (its run.json): the same loss and distillation
// settings (a teacher or store by the digest of its contents, not its
// path) and the same global batch, which the run's audit (Verify) follows
// from its first step (the data is checked with the checkpoint's data
// state). A run.json that is missing (a
// run.dir holding only checkpoints) is no objection; one that does not
// read is logged and passed over, since the resumed run rewrites it.
func checkResumeSpec(runDir string, now JobSpec, ckpt string, log *slog.Logger) error {
	path := filepath.Join(runDir, "run.json")
	var rec runRecord
	var raw struct {
		Spec map[string]json.RawMessage `json:"spec"`
	}
	b, err := os.ReadFile(path)
	if err == nil {
		err = errors.Join(json.Unmarshal(b, &rec), json.Unmarshal(b, &raw))
	}
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("the run being resumed has a run.json that does not read: its settings are not compared", "path", path, "err", err)
		}
		return nil
	}
	if diff, was := resumeDiff(now, rec.Spec, raw.Spec); diff != "" {
		return fmt.Errorf("%w: %s, but the run in %s was trained with %s; a resumed run keeps what it trains toward and its batch. To go on with other settings, start a new run.dir with --model.init %s",
			config.ErrInvalid, diff, runDir, was, ckpt)
	}
	return nil
}

// resumeKept are the settings a resumed run keeps: the key of run.json's
// spec, the configuration's key, the value compared and, when it is not
// the value itself, what a message shows. A teacher and a store are
// compared by digest, shown by path and digest. omitEmpty keys are written
// only when set: their absence is a zero. A key that is always written now
// but missing from an older klring's run.json is not compared.
var resumeKept = []struct {
	json, key string
	omitEmpty bool
	get       func(JobSpec) any
	show      func(JobSpec) string
}{
	{"batch_windows", "train.batch_windows", false, func(s JobSpec) any { return s.BatchWindows }, nil},
	{"target", "loss.target", false, func(s JobSpec) any { return s.Target }, nil},
	{"direction", "loss.direction", false, func(s JobSpec) any { return s.Direction }, nil},
	{"beta", "loss.beta", false, func(s JobSpec) any { return s.Beta }, nil},
	{"temperature", "loss.temperature", false, func(s JobSpec) any { return s.Temperature }, nil},
	{"label_smoothing", "loss.label_smoothing", false, func(s JobSpec) any { return s.Smoothing }, nil},
	{"teacher_sha256", "loss.teacher", true, func(s JobSpec) any { return s.TeacherSHA256 },
		func(s JobSpec) string { return orNone(s.Teacher) + " (weights " + orNone(short(s.TeacherSHA256)) + ")" }},
	{"teacher_temperature", "loss.teacher_temperature", false, func(s JobSpec) any { return s.TeacherTemperature }, nil},
	{"scale_t2", "loss.scale_t2", false, func(s JobSpec) any { return s.ScaleT2 }, nil},
	{"hard_weight", "loss.hard_weight", false, func(s JobSpec) any { return s.HardWeight }, nil},
	{"teacher_top_k", "loss.teacher_top_k", false, func(s JobSpec) any { return s.TeacherTopK }, nil},
	{"teacher_tail", "loss.teacher_tail", false, func(s JobSpec) any { return s.TeacherTail }, nil},
	{"teacher_store_digest", "loss.teacher_store", true, func(s JobSpec) any { return s.TeacherStoreDigest },
		func(s JobSpec) string {
			return orNone(s.TeacherStore) + " (digest " + orNone(short(s.TeacherStoreDigest)) + ")"
		}},
	{"on_policy", "loss.on_policy", true, func(s JobSpec) any { return s.OnPolicy }, nil},
	{"on_policy_prefix", "loss.on_policy_prefix", true, func(s JobSpec) any { return s.OnPolicyPrefix }, nil},
	{"on_policy_temperature", "loss.on_policy_temperature", true, func(s JobSpec) any { return s.OnPolicyTemp }, nil},
}

// resumeDiff names the kept settings (resumeKept) in which now differs
// from old, run.json's spec (recorded: its keys), with now's values and
// with old's ("" when none differ).
func resumeDiff(now, old JobSpec, recorded map[string]json.RawMessage) (diff, was string) {
	var a, b []string
	for _, f := range resumeKept {
		if _, ok := recorded[f.json]; !ok && !f.omitEmpty {
			continue
		}
		if f.get(now) == f.get(old) {
			continue
		}
		show := func(s JobSpec) string { return fmt.Sprint(f.get(s)) }
		if f.show != nil {
			show = f.show
		}
		a = append(a, f.key+" = "+show(now))
		b = append(b, f.key+" = "+show(old))
	}
	return strings.Join(a, ", "), strings.Join(b, ", ")
}

// orNone is s, or "none" when it is empty.
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// short is the first 12 characters of a digest.
func short(d string) string { return d[:min(len(d), 12)] }

// checkShape checks the model shape m sets (each field > 0, or preset's
// where m does not set it; a zero preset gives none) against got, the shape
// of what (a checkpoint, a model.init folder), naming the first that
// differs.
func checkShape(m config.Model, preset lm.Config, got lm.Config, what string) error {
	for _, f := range []struct {
		key              string
		set, preset, got int
	}{
		{"model.n_embd", m.NEmbd, preset.NEmbd, got.NEmbd}, {"model.n_layer", m.NLayer, preset.NLayer, got.NLayer},
		{"model.n_head", m.NHead, preset.NHead, got.NHead}, {"model.ctx", m.Ctx, preset.Ctx, got.Ctx},
		{"model.vocab", m.Vocab, 0, got.Vocab},
	} {
		want, name := f.set, fmt.Sprintf("%s = %d", f.key, f.set)
		if want <= 0 && f.preset > 0 {
			want, name = f.preset, fmt.Sprintf("model.preset %s has %s = %d", m.Preset, f.key, f.preset)
		}
		if want > 0 && want != f.got {
			return fmt.Errorf("%w: %s, but %s has %d", config.ErrInvalid, name, what, f.got)
		}
	}
	return nil
}

func toInt32(a []int) []int32 {
	out := make([]int32, len(a))
	for i, v := range a {
		out[i] = int32(v)
	}
	return out
}

func toInt(a []int32) []int {
	out := make([]int, len(a))
	for i, v := range a {
		out[i] = int(v)
	}
	return out
}

func jsonMarshalIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
