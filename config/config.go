package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/engine"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/loss"
	"github.com/klring/klring/shard"
)

// Config is the whole configuration of a klring job. Field tags are the
// user-facing key names.
type Config struct {
	Job       string    `mapstructure:"job"`
	NATS      NATS      `mapstructure:"nats"`
	Model     Model     `mapstructure:"model"`
	Data      Data      `mapstructure:"data"`
	Loss      Loss      `mapstructure:"loss"`
	Train     Train     `mapstructure:"train"`
	AllReduce AllReduce `mapstructure:"allreduce"`
	Cluster   Cluster   `mapstructure:"cluster"`
	Run       Run       `mapstructure:"run"`
}

// NATS says how to reach the NATS server. In simulation mode the URL is
// ignored: an embedded server is started. The TLS files are PEM files;
// setting any of them (or a tls:// URL) requires TLS.
type NATS struct {
	URL      string `mapstructure:"url"`
	User     string `mapstructure:"user"`
	Password string `mapstructure:"password"`
	Token    string `mapstructure:"token"`
	Creds    string `mapstructure:"creds"`
	TLSCA    string `mapstructure:"tls_ca"`   // CA of the server's certificate
	TLSCert  string `mapstructure:"tls_cert"` // client certificate (mutual TLS)
	TLSKey   string `mapstructure:"tls_key"`  // its private key

	// A NATS cluster (docs/cluster.md): an embedded server in this process
	// (Embed), joined by routes to the other servers of the cluster, and
	// the number of clustered servers of a simulation (Servers).
	Embed           bool   `mapstructure:"embed"`
	Listen          string `mapstructure:"listen"`      // the embedded server's client address
	ServerName      string `mapstructure:"server_name"` // its name; empty: the host name
	ClusterName     string `mapstructure:"cluster_name"`
	ClusterListen   string `mapstructure:"cluster_listen"` // its route address; empty: none
	Routes          string `mapstructure:"routes"`         // comma-separated route URLs
	ClusterUser     string `mapstructure:"cluster_user"`
	ClusterPassword string `mapstructure:"cluster_password"`
	Servers         int    `mapstructure:"servers"` // simulation mode
}

// Model chooses the network.
type Model struct {
	Preset string `mapstructure:"preset"` // tiny, small, custom
	Vocab  int    `mapstructure:"vocab"`  // 0: from the data
	// VocabPad pads the rows of the tied embedding to a multiple of it
	// (lm.Config.VocabPad); 0 or 1: none.
	VocabPad int    `mapstructure:"vocab_pad"`
	NEmbd    int    `mapstructure:"n_embd"` // custom only (or overrides a preset when > 0)
	NLayer   int    `mapstructure:"n_layer"`
	NHead    int    `mapstructure:"n_head"`
	Ctx      int    `mapstructure:"ctx"`
	Init     string `mapstructure:"init"` // a Hugging Face GPT-2 folder to start from
}

// Data chooses the corpus.
type Data struct {
	Source      string  `mapstructure:"source"` // synthetic, text:PATH, tokens:PATH
	ValFraction float64 `mapstructure:"val_fraction"`
	// Tokenizer turns text:PATH into tokens (bytes or gpt2); with
	// tokens:PATH it says what the ids are (for samples and bits per byte).
	Tokenizer string `mapstructure:"tokenizer"`
	// CacheDir holds tokenized texts; empty: run.dir/tokens on the
	// coordinator, the user's cache folder on a worker.
	CacheDir string `mapstructure:"cache_dir"`
	Seed     uint64 `mapstructure:"seed"`
}

// Loss chooses the divergence the workers minimise.
type Loss struct {
	Direction      loss.Direction `mapstructure:"direction"` // forward, reverse, jsd
	Target         engine.Target  `mapstructure:"target"`    // auto, hard, soft, teacher
	Beta           float64        `mapstructure:"beta"`
	Temperature    float64        `mapstructure:"temperature"`
	LabelSmoothing float64        `mapstructure:"label_smoothing"`

	// Distillation (README.md, "Distillation: KL to a teacher").
	Teacher            string    `mapstructure:"teacher"`             // a Hugging Face GPT-2 folder; "": none
	TeacherTemperature float64   `mapstructure:"teacher_temperature"` // 0: loss.temperature
	ScaleT2            bool      `mapstructure:"scale_t2"`
	HardWeight         float64   `mapstructure:"hard_weight"`
	TeacherTopK        int       `mapstructure:"teacher_top_k"`
	TeacherTail        loss.Tail `mapstructure:"teacher_tail"`
	TeacherStore       string    `mapstructure:"teacher_store"` // a precomputed top-k store; "": none
	OnPolicy           float64   `mapstructure:"on_policy"`
	OnPolicyPrefix     int       `mapstructure:"on_policy_prefix"` // 0: ctx/2
	OnPolicyTemp       float64   `mapstructure:"on_policy_temperature"`
}

// LossOptions are the options of package loss that the configuration sets.
func (l Loss) LossOptions() loss.Options {
	o := loss.DefaultOptions()
	o.Direction, o.Beta, o.Temperature, o.LabelSmoothing = l.Direction, l.Beta, l.Temperature, l.LabelSmoothing
	o.TeacherTemperature = l.TeacherTemperature
	if o.TeacherTemperature == 0 {
		o.TeacherTemperature = l.Temperature
	}
	o.ScaleT2, o.HardWeight = l.ScaleT2, l.HardWeight
	if l.Teacher != "" || l.TeacherStore != "" {
		o.TeacherTopK, o.TeacherTail = l.TeacherTopK, l.TeacherTail
	}
	return o
}

// Train holds the optimisation settings.
type Train struct {
	Steps        int     `mapstructure:"steps"`
	BatchWindows int     `mapstructure:"batch_windows"` // the global batch, in windows
	MicroWindows int     `mapstructure:"micro_windows"` // windows per forward-backward pass of a worker; 0: its whole shard
	Optimizer    string  `mapstructure:"optimizer"`     // adamw, sgd
	LR           float64 `mapstructure:"lr"`
	Schedule     string  `mapstructure:"schedule"` // constant, cosine
	WarmupSteps  int     `mapstructure:"warmup_steps"`
	MinLR        float64 `mapstructure:"min_lr"`
	WeightDecay  float64 `mapstructure:"weight_decay"`
	GradClip     float64 `mapstructure:"grad_clip"` // 0 disables
	Seed         uint64  `mapstructure:"seed"`
}

// AllReduce tunes the gradient exchange.
type AllReduce struct {
	ChunkBytes int           `mapstructure:"chunk_bytes"`
	Deadline   time.Duration `mapstructure:"deadline"`
	// Wire is how ring parts cross the wire: f32, or bf16 (rounded to
	// bfloat16, half the bytes; allreduce/doc.go).
	Wire string `mapstructure:"wire"`
	// ErrorFeedback makes each worker add its bf16 rounding residual of a
	// step to the next step's gradient (bf16 only).
	ErrorFeedback bool `mapstructure:"error_feedback"`
	// BucketBytes is the size of the buckets in which a worker hands its
	// gradient to the ring as backward finishes them (0: no overlap).
	BucketBytes int `mapstructure:"bucket_bytes"`
}

// Cluster sets membership and failure detection.
type Cluster struct {
	Workers      int           `mapstructure:"workers"` // simulation mode
	MinWorkers   int           `mapstructure:"min_workers"`
	StepDeadline time.Duration `mapstructure:"step_deadline"`
	Heartbeat    time.Duration `mapstructure:"heartbeat"`
	// CoordinatorTimeout is how long a worker waits for a silent, paused
	// or restarted coordinator before it ends.
	CoordinatorTimeout time.Duration `mapstructure:"coordinator_timeout"`
	Threads            int           `mapstructure:"threads"` // kernel threads per process; 0: all cores
}

// Run says where outputs go and how often.
type Run struct {
	Dir             string `mapstructure:"dir"`
	CheckpointEvery int    `mapstructure:"checkpoint_every"`
	Keep            int    `mapstructure:"keep"`
	EvalEvery       int    `mapstructure:"eval_every"`
	// SampleKLWindows, with synthetic data, adds to every evaluation the
	// exact reverse KL from the model to the truth on the model's own
	// samples, over this many held-out windows (0: none).
	SampleKLWindows int    `mapstructure:"sample_kl_windows"`
	MetricsAddr     string `mapstructure:"metrics_addr"`
	// PeakGFLOPs is the peak that model FLOPs utilisation (MFU) is
	// reported against; 0: measured once at start on the coordinator's
	// machine (right for simulation and for workers on that machine).
	PeakGFLOPs float64 `mapstructure:"peak_gflops"`
}

// Key describes one configuration key: its name, default and help text.
type Key struct {
	Name    string
	Default any
	Usage   string
}

// Keys lists every key with its default, in the order --help shows them.
func Keys() []Key {
	return []Key{
		{"job", "klring", "job name; becomes a NATS subject token, [A-Za-z0-9_-]+"},
		{"nats.url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated, each [nats|tls|ws|wss://][user:password@]host[:port] (ignored by simulation mode, which embeds a server)"},
		{"nats.user", "", "NATS user name"},
		{"nats.password", "", "NATS password"},
		{"nats.token", "", "NATS token"},
		{"nats.creds", "", "NATS credentials file"},
		{"nats.tls_ca", "", "PEM file of the CA that signed the NATS server's certificate; set, or a tls:// nats.url, to use TLS (empty: the system's roots)"},
		{"nats.tls_cert", "", "PEM file of this process's client certificate, for a NATS server that requires one (mutual TLS); with nats.tls_key"},
		{"nats.tls_key", "", "PEM file of the private key of nats.tls_cert"},
		{"nats.embed", false, "run a NATS server in this process, joined to the cluster of nats.routes, and connect to it instead of nats.url (a node's worker and its server in one process)"},
		{"nats.listen", "127.0.0.1:0", "client address of the embedded server (nats.embed); port 0: a free one, for this process alone"},
		{"nats.server_name", "", "name of the embedded server, which its workers report for ring placement; empty: the host name"},
		{"nats.cluster_name", "klring", "name of the NATS cluster the embedded server joins"},
		{"nats.cluster_listen", "", "address the embedded server listens on for routes from the other servers of the cluster, e.g. 0.0.0.0:6222; empty: none"},
		{"nats.routes", "", "route URLs of other servers of the cluster, comma separated, e.g. nats-route://node2:6222"},
		{"nats.cluster_user", "", "user name routes present to the embedded server (and it to theirs); with nats.cluster_password"},
		{"nats.cluster_password", "", "password of nats.cluster_user"},
		{"nats.servers", 1, "simulation mode: clustered embedded NATS servers the workers are spread over, one route between neighbours (1: one server)"},
		{"model.preset", "tiny", "model size: tiny, small or custom"},
		{"model.vocab", 0, "vocabulary size; 0 takes it from the data"},
		{"model.vocab_pad", 0, "pad the embedding's rows to a multiple of this, as llm.c pads 50257 to 50304 with 64: zero rows, never predicted, not in checkpoints; 0 or 1: none"},
		{"model.n_embd", 0, "embedding width (custom, or overrides the preset when > 0)"},
		{"model.n_layer", 0, "number of layers (custom, or overrides the preset when > 0)"},
		{"model.n_head", 0, "number of attention heads (custom, or overrides the preset when > 0)"},
		{"model.ctx", 0, "context length (custom, or overrides the preset when > 0)"},
		{"model.init", "", "a Hugging Face GPT-2 folder (model.safetensors, config.json) to start from"},
		{"data.source", "synthetic", "synthetic (settings as synthetic:modes=2,vocab=128), text:PATH or tokens:PATH"},
		{"data.val_fraction", 0.05, "fraction of windows held out for evaluation, in [0, 0.5]"},
		{"data.seed", uint64(1), "seed of the synthetic source and of the epoch order"},
		{"data.tokenizer", "bytes", "bytes (a token per byte, vocabulary 256) or gpt2 (GPT-2's BPE, vocabulary 50257) for text:PATH; with tokens:PATH, what the ids are"},
		{"data.cache_dir", "", "folder of tokenized texts; empty: run.dir/tokens (coordinator), the user's cache folder (worker)"},
		{"loss.direction", "forward", "forward D_KL(P||Q), reverse D_KL(Q||P) or jsd"},
		{"loss.target", "auto", "auto (the teacher's distribution with loss.teacher, else soft where the data has it), hard, soft or teacher"},
		{"loss.beta", 0.5, "JSD weight of the target, in [0, 1]; 0 is forward KL, 1 reverse KL"},
		{"loss.temperature", 1.0, "softmax temperature of the model (the student), > 0"},
		{"loss.label_smoothing", 0.0, "label smoothing eps in [0, 1): P = (1-eps) P + eps/vocab, for hard, soft and teacher targets"},
		{"loss.teacher", "", "a Hugging Face GPT-2 folder whose next-token distribution is the target (distillation); empty: none"},
		{"loss.teacher_temperature", 0.0, "softmax temperature of the teacher; 0: loss.temperature"},
		{"loss.scale_t2", false, "multiply the divergence by temperature^2 (the student's)"},
		{"loss.hard_weight", 0.0, "w in [0, 1]: loss = (1-w) divergence + w cross-entropy of the next token (temperature 1)"},
		{"loss.teacher_top_k", 0, "keep the teacher's k most likely tokens (0: all)"},
		{"loss.teacher_tail", "renormalize", "the rest of a top-k teacher: renormalize, uniform, or rest (one bucket; forward KL only)"},
		{"loss.teacher_store", "", "a teacher's precomputed top-k store (coordinator teacher-dump) to train from instead of a live teacher"},
		{"loss.on_policy", 0.0, "fraction of each global batch's windows on which the student first samples a continuation that the teacher (or the synthetic truth) then scores"},
		{"loss.on_policy_prefix", 0, "tokens of a window kept before the student's continuation; 0: half the context"},
		{"loss.on_policy_temperature", 1.0, "sampling temperature of the student's continuations"},
		{"train.steps", 300, "number of optimizer steps"},
		{"train.batch_windows", 16, "global batch, in windows of ctx+1 tokens"},
		{"train.micro_windows", 2, "windows per forward-backward pass of a worker (micro-batches whose gradients add up before the ring: a worker's activations are sized for this many windows, whatever the batch); 0: a worker's whole shard at once"},
		{"train.optimizer", "adamw", "adamw or sgd"},
		{"train.lr", 6e-3, "peak learning rate"},
		{"train.schedule", "cosine", "constant, or cosine (linear warmup then cosine decay to min_lr)"},
		{"train.warmup_steps", 20, "linear warmup steps of the cosine schedule"},
		{"train.min_lr", 6e-4, "floor of the cosine schedule"},
		{"train.weight_decay", 0.0, "decoupled weight decay of AdamW"},
		{"train.grad_clip", 1.0, "global gradient norm clip; 0 disables"},
		{"train.seed", uint64(1), "seed of the model initialisation and sampling"},
		{"allreduce.chunk_bytes", 512 << 10, "largest ring message, envelope included, in bytes; with its header it must fit the NATS server's max_payload (1 MiB by default)"},
		{"allreduce.deadline", 10 * time.Second, "time an all-reduce may take before it fails"},
		{"allreduce.wire", "f32", "f32, or bf16: ring parts rounded to bfloat16 (half the bytes; sums in float32, replicas still bit-identical; the loss sum and token count stay float32)"},
		{"allreduce.error_feedback", false, "with allreduce.wire bf16: each worker adds what rounding lost of its gradient (its residual) to its next step's gradient; residuals start at zero on resume and after a resync"},
		{"allreduce.bucket_bytes", 256 << 10, "overlap the ring with backward: each worker hands its gradient to the ring in buckets of about this many bytes (whole rows of ring parts) as backward finishes them, last layers first; 0: the whole gradient once backward is done. The sums do not depend on it"},
		{"cluster.workers", 4, "number of in-process workers (simulation mode)"},
		{"cluster.min_workers", 1, "fewest workers a step may run with"},
		{"cluster.step_deadline", 5 * time.Second, "time a step may take before it is aborted and retried"},
		{"cluster.heartbeat", 1 * time.Second, "interval of worker heartbeats; three missed ones mark a worker dead"},
		{"cluster.coordinator_timeout", 10 * time.Minute, "how long a worker that has trained waits for a silent, paused or restarted coordinator before it ends (one that has not joined a run yet waits for a coordinator until stopped)"},
		{"cluster.threads", 0, "kernel threads per process; 0 uses every core"},
		{"run.dir", "", "output folder (metrics.jsonl, checkpoints/, loss.png); empty: runs/<job> for coordinator run, a new runs/<job>-<time> for sim"},
		{"run.checkpoint_every", 100, "checkpoint every N steps (and at the end); 0: only at the end"},
		{"run.keep", 3, "number of checkpoints kept"},
		{"run.eval_every", 50, "evaluate on held-out windows every N steps (and at the end); 0: only at the end"},
		{"run.metrics_addr", "", "address of the Prometheus metrics endpoint, e.g. :9090; empty disables it"},
		{"run.peak_gflops", 0.0, "the hardware's peak GFLOP/s that MFU is reported against (the sum over the workers' machines); 0: measured at start with a matrix product on the coordinator's machine"},
		{"run.sample_kl_windows", 0, "synthetic data: also evaluate the reverse KL to the truth (smoothed by 0.01) on the model's own samples, over this many held-out windows; 0: not"},
	}
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("config: invalid value")

var jobName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks every value and returns all problems found, each naming the
// key, the value and what is allowed.
func (c Config) Validate() error {
	var errs []error
	bad := func(key string, val any, allowed string) {
		errs = append(errs, fmt.Errorf("%w: %s = %v: %s", ErrInvalid, key, val, allowed))
	}
	oneOf := func(key, val string, allowed ...string) {
		for _, a := range allowed {
			if val == a {
				return
			}
		}
		bad(key, fmt.Sprintf("%q", val), "must be one of "+strings.Join(allowed, ", "))
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

	if !jobName.MatchString(c.Job) {
		bad("job", fmt.Sprintf("%q", c.Job), "must match [A-Za-z0-9_-]{1,64} (it becomes a NATS subject token)")
	}
	if c.NATS.Token != "" && (c.NATS.User != "" || c.NATS.Password != "") {
		bad("nats.token", "(set)", "cannot be combined with nats.user/nats.password")
	}
	if (c.NATS.User == "") != (c.NATS.Password == "") {
		bad("nats.user", fmt.Sprintf("%q", c.NATS.User), "nats.user and nats.password must be set together")
	}
	if (c.NATS.TLSCert == "") != (c.NATS.TLSKey == "") {
		bad("nats.tls_cert", fmt.Sprintf("%q", c.NATS.TLSCert), fmt.Sprintf("nats.tls_cert and nats.tls_key must be set together (nats.tls_key = %q)", c.NATS.TLSKey))
	}

	if (c.NATS.ClusterUser == "") != (c.NATS.ClusterPassword == "") {
		bad("nats.cluster_user", fmt.Sprintf("%q", c.NATS.ClusterUser), "nats.cluster_user and nats.cluster_password must be set together")
	}
	for _, kv := range []struct{ key, v string }{{"nats.listen", c.NATS.Listen}, {"nats.cluster_listen", c.NATS.ClusterListen}} {
		if _, port, err := net.SplitHostPort(kv.v); kv.v != "" && (err != nil || port == "") {
			bad(kv.key, fmt.Sprintf("%q", kv.v), "must be HOST:PORT, such as 0.0.0.0:6222")
		}
	}
	if c.NATS.Embed && c.NATS.Listen == "" {
		bad("nats.listen", `""`, "must be HOST:PORT with nats.embed")
	}
	if c.NATS.Servers < 1 || c.NATS.Servers > 64 {
		bad("nats.servers", c.NATS.Servers, "must be in [1, 64]")
	}

	oneOf("model.preset", c.Model.Preset, "tiny", "small", "custom")
	for _, kv := range []struct {
		key string
		v   int
	}{{"model.vocab", c.Model.Vocab}, {"model.n_embd", c.Model.NEmbd}, {"model.n_layer", c.Model.NLayer}, {"model.n_head", c.Model.NHead}, {"model.ctx", c.Model.Ctx}} {
		if kv.v < 0 {
			bad(kv.key, kv.v, "must be >= 0")
		}
	}
	if c.Model.Vocab > 65536 {
		bad("model.vocab", c.Model.Vocab, "must be <= 65536 (tokens are uint16)")
	}
	if c.Model.VocabPad < 0 || c.Model.VocabPad > lm.MaxVocabPad {
		bad("model.vocab_pad", c.Model.VocabPad, fmt.Sprintf("must be in [0, %d] (0 or 1: no padding)", lm.MaxVocabPad))
	}
	if c.Model.Preset == "custom" && c.Model.Init == "" {
		for _, kv := range []struct {
			key string
			v   int
		}{{"model.n_embd", c.Model.NEmbd}, {"model.n_layer", c.Model.NLayer}, {"model.n_head", c.Model.NHead}, {"model.ctx", c.Model.Ctx}} {
			if kv.v == 0 {
				bad(kv.key, 0, "must be > 0 with model.preset = custom")
			}
		}
	}
	if c.Model.NHead > 0 && c.Model.NEmbd > 0 && c.Model.NEmbd%c.Model.NHead != 0 {
		bad("model.n_embd", c.Model.NEmbd, fmt.Sprintf("must be a multiple of model.n_head = %d", c.Model.NHead))
	}

	src := c.Data.Source
	if err := (shard.Options{Source: src, Ctx: 1, ValFraction: c.Data.ValFraction}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: data: %w", ErrInvalid, err))
	}
	oneOf("data.tokenizer", c.Data.Tokenizer, "bytes", "gpt2")
	if c.Data.Tokenizer == "gpt2" && strings.HasPrefix(src, "synthetic") {
		bad("data.tokenizer", `"gpt2"`, "applies to text:PATH and tokens:PATH sources, not synthetic")
	}
	if !(c.Data.ValFraction >= 0 && c.Data.ValFraction <= 0.5) {
		bad("data.val_fraction", c.Data.ValFraction, "must be in [0, 0.5]")
	}

	// The loss section. loss's own options check their ranges: each key
	// alone, so that every bad one is reported, by its name (the options'
	// Validate stops at the first field), and then the combinations that
	// cannot give a finite loss whatever the data. An option that would be
	// read by nothing is an error too, when set to other than its default.
	l := c.Loss
	hasTeacher := l.Teacher != "" || l.TeacherStore != ""
	lossOK := true
	lossKey := func(key string, val any, set func(*loss.Options)) bool {
		o := loss.DefaultOptions()
		set(&o)
		if err := o.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s = %v: %w", ErrInvalid, key, val, err))
			lossOK = false
			return false
		}
		return true
	}
	const noTeacher = "needs loss.teacher or loss.teacher_store (without a teacher it has no effect)"
	lossKey("loss.direction", l.Direction, func(o *loss.Options) { o.Direction = l.Direction })
	if l.Direction == loss.JSD {
		lossKey("loss.beta", l.Beta, func(o *loss.Options) { o.Direction, o.Beta = loss.JSD, l.Beta })
	} else if !isDefault("loss.beta", l.Beta) {
		bad("loss.beta", l.Beta, fmt.Sprintf("is read by loss.direction = jsd only (loss.direction = %v ignores it)", l.Direction))
	}
	lossKey("loss.temperature", l.Temperature, func(o *loss.Options) { o.Temperature = l.Temperature })
	// loss.teacher_temperature's default, 0, stands for loss.temperature.
	if !isDefault("loss.teacher_temperature", l.TeacherTemperature) &&
		lossKey("loss.teacher_temperature", l.TeacherTemperature, func(o *loss.Options) { o.TeacherTemperature = l.TeacherTemperature }) && !hasTeacher {
		bad("loss.teacher_temperature", l.TeacherTemperature, noTeacher)
	}
	lossKey("loss.label_smoothing", l.LabelSmoothing, func(o *loss.Options) { o.LabelSmoothing = l.LabelSmoothing })
	lossKey("loss.hard_weight", l.HardWeight, func(o *loss.Options) { o.HardWeight = l.HardWeight })
	if lossKey("loss.teacher_top_k", l.TeacherTopK, func(o *loss.Options) { o.TeacherTopK = l.TeacherTopK }) &&
		!hasTeacher && !isDefault("loss.teacher_top_k", l.TeacherTopK) {
		bad("loss.teacher_top_k", l.TeacherTopK, noTeacher)
	}
	if lossKey("loss.teacher_tail", l.TeacherTail, func(o *loss.Options) { o.TeacherTail = l.TeacherTail }) &&
		!hasTeacher && !isDefault("loss.teacher_tail", l.TeacherTail) {
		bad("loss.teacher_tail", l.TeacherTail, noTeacher)
	}
	if lossOK {
		lo := l.LossOptions()
		if err := lo.Validate(); err != nil { // a field not checked above
			errs = append(errs, fmt.Errorf("%w: loss: %w", ErrInvalid, err))
		} else if hasTeacher {
			// The refusals of CheckTeacher are the tail's: rest with
			// another direction than forward, renormalize with reverse KL.
			if err := lo.CheckTeacher(); err != nil {
				errs = append(errs, fmt.Errorf("%w: loss.teacher_tail = %v: %w", ErrInvalid, l.TeacherTail, err))
			}
		}
	}
	if l.Teacher != "" && l.TeacherStore != "" {
		bad("loss.teacher_store", fmt.Sprintf("%q", l.TeacherStore), "cannot be combined with loss.teacher: train from the live teacher or from its store")
	}
	if hasTeacher && (l.Target == engine.TargetHard || l.Target == engine.TargetSoft) {
		bad("loss.target", l.Target, "must be auto or teacher with a teacher (hard and soft targets would leave it unused)")
	}
	if l.Target == engine.TargetTeacher && !hasTeacher {
		bad("loss.target", l.Target, "needs loss.teacher or loss.teacher_store")
	}

	// On-policy training is on when loss.on_policy, the fraction of the
	// windows sampled, is not 0 (a bad fraction is reported as such).
	onPolicy := l.OnPolicy != 0
	const offPolicy = "has no effect with loss.on_policy = 0 (on-policy training off): set loss.on_policy > 0, or leave it out"
	if !(l.OnPolicy >= 0 && l.OnPolicy <= 1) {
		bad("loss.on_policy", l.OnPolicy, "must be in [0, 1]")
	}
	// The context, where the configuration says it (model.init's comes
	// from its folder: the engine checks the prefix against that).
	ctx, ctxFrom := 0, ""
	if c.Model.Ctx > 0 {
		ctx, ctxFrom = c.Model.Ctx, "model.ctx"
	} else if p, err := lm.Preset(c.Model.Preset); err == nil && c.Model.Init == "" {
		ctx, ctxFrom = p.Ctx, "model.preset "+c.Model.Preset
	}
	switch {
	case l.OnPolicyPrefix < 0:
		bad("loss.on_policy_prefix", l.OnPolicyPrefix, "must be >= 0 (0: half the context)")
	case !onPolicy && !isDefault("loss.on_policy_prefix", l.OnPolicyPrefix):
		bad("loss.on_policy_prefix", l.OnPolicyPrefix, offPolicy)
	case onPolicy && ctx == 1:
		bad("loss.on_policy", l.OnPolicy, fmt.Sprintf("needs a context of at least 2 tokens, a prefix and a continuation (%s = %d)", ctxFrom, ctx))
	case onPolicy && ctx > 0 && l.OnPolicyPrefix >= ctx:
		bad("loss.on_policy_prefix", l.OnPolicyPrefix, fmt.Sprintf("must be in [1, %d], below the context %d (%s); 0: half the context", ctx-1, ctx, ctxFrom))
	}
	switch {
	case !(l.OnPolicyTemp > 0) || !finite(l.OnPolicyTemp):
		bad("loss.on_policy_temperature", l.OnPolicyTemp, "must be a finite number > 0")
	case !onPolicy && !isDefault("loss.on_policy_temperature", l.OnPolicyTemp):
		bad("loss.on_policy_temperature", l.OnPolicyTemp, offPolicy)
	}

	if c.Train.Steps < 1 {
		bad("train.steps", c.Train.Steps, "must be >= 1")
	}
	if c.Train.BatchWindows < 1 {
		bad("train.batch_windows", c.Train.BatchWindows, "must be >= 1")
	}
	if c.Train.MicroWindows < 0 {
		bad("train.micro_windows", c.Train.MicroWindows, "must be >= 0 (0: a worker's whole shard in one pass)")
	}
	oneOf("train.optimizer", c.Train.Optimizer, "adamw", "sgd")
	sched := lm.Schedule{Kind: c.Train.Schedule, Base: c.Train.LR, Min: c.Train.MinLR,
		WarmupSteps: int64(c.Train.WarmupSteps), TotalSteps: int64(max(c.Train.Steps, c.Train.WarmupSteps+1))}
	if c.Train.Schedule == "" {
		bad("train.schedule", `""`, "must be constant or cosine")
	} else if err := sched.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: train.%w", ErrInvalid, err))
	}
	adam := lm.DefaultAdamWOptions()
	adam.WeightDecay = c.Train.WeightDecay
	if err := adam.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: train: %w", ErrInvalid, err))
	}
	if !(c.Train.GradClip >= 0) || !finite(c.Train.GradClip) {
		bad("train.grad_clip", c.Train.GradClip, "must be a finite number >= 0 (0 disables clipping)")
	}

	if err := (allreduce.Options{ChunkBytes: c.AllReduce.ChunkBytes, Deadline: c.AllReduce.Deadline}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: allreduce: %w", ErrInvalid, err))
	}
	if c.AllReduce.ChunkBytes < 1024 {
		bad("allreduce.chunk_bytes", c.AllReduce.ChunkBytes, "must be >= 1024 (a snapshot chunk and a segment part must fit)")
	}
	if c.AllReduce.Deadline <= 0 {
		bad("allreduce.deadline", c.AllReduce.Deadline, "must be > 0 (an all-reduce without a deadline could hang)")
	}
	oneOf("allreduce.wire", c.AllReduce.Wire, "f32", "bf16")
	if c.AllReduce.ErrorFeedback && c.AllReduce.Wire != "bf16" {
		bad("allreduce.error_feedback", true, fmt.Sprintf("needs allreduce.wire = bf16 (allreduce.wire = %q: nothing is rounded, there is no residual to feed back)", c.AllReduce.Wire))
	}

	if c.AllReduce.BucketBytes < 0 || c.AllReduce.BucketBytes > allreduce.MaxBucketBytes {
		bad("allreduce.bucket_bytes", c.AllReduce.BucketBytes, "must be in [0, 1 GiB] (0: no overlap of the ring with backward)")
	}

	if c.Cluster.Workers < 1 || c.Cluster.Workers > 64 {
		bad("cluster.workers", c.Cluster.Workers, "must be in [1, 64]")
	}
	if c.Cluster.MinWorkers < 1 {
		bad("cluster.min_workers", c.Cluster.MinWorkers, "must be >= 1")
	}
	if c.Cluster.StepDeadline <= 0 {
		bad("cluster.step_deadline", c.Cluster.StepDeadline, "must be > 0")
	}
	if c.Cluster.Heartbeat < 10*time.Millisecond {
		bad("cluster.heartbeat", c.Cluster.Heartbeat, "must be >= 10ms")
	}
	if c.Cluster.CoordinatorTimeout < 3*c.Cluster.Heartbeat {
		bad("cluster.coordinator_timeout", c.Cluster.CoordinatorTimeout, "must be >= three heartbeats")
	}
	if c.Cluster.Threads < 0 {
		bad("cluster.threads", c.Cluster.Threads, "must be >= 0 (0 uses every core)")
	}

	if c.Run.CheckpointEvery < 0 {
		bad("run.checkpoint_every", c.Run.CheckpointEvery, "must be >= 0")
	}
	if c.Run.Keep < 1 {
		bad("run.keep", c.Run.Keep, "must be >= 1")
	}
	if c.Run.SampleKLWindows < 0 {
		bad("run.sample_kl_windows", c.Run.SampleKLWindows, "must be >= 0")
	}
	if !(c.Run.PeakGFLOPs >= 0) || math.IsInf(c.Run.PeakGFLOPs, 0) {
		bad("run.peak_gflops", c.Run.PeakGFLOPs, "must be a finite number >= 0 (0: measure)")
	}
	if c.Run.EvalEvery < 0 {
		bad("run.eval_every", c.Run.EvalEvery, "must be >= 0")
	}
	return errors.Join(errs...)
}

// ErrUnknownKey is returned for a key in a configuration file, or a KLRING_
// environment variable, that klring does not know.
var ErrUnknownKey = errors.New("config: unknown key")

// isDefault reports whether v is key's default in Keys(): numbers compare
// as numbers (so -0 is 0), anything else by its text (a loss.Tail as
// "renormalize"). It panics on a key Keys does not list.
func isDefault(key string, v any) bool {
	for _, k := range Keys() {
		if k.Name != key {
			continue
		}
		switch d := k.Default.(type) {
		case float64:
			f, ok := v.(float64)
			return ok && f == d
		case int:
			i, ok := v.(int)
			return ok && i == d
		default:
			return fmt.Sprint(v) == fmt.Sprint(d)
		}
	}
	panic("config: isDefault of an unknown key " + key)
}
