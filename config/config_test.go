package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing flags %v: %v", args, err)
	}
	return fs
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "klring.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	c, err := Load(nil)
	if err != nil {
		t.Fatalf("Load(nil) = %v; want the defaults to be valid", err)
	}
	if c.Train.LR != 6e-3 || c.Cluster.Workers != 4 || c.Cluster.StepDeadline != 5*time.Second || c.Data.Source != "synthetic" {
		t.Errorf("defaults = %+v", c)
	}
}

// An environment variable alone must change a nested value: viper ignores
// env-only nested keys unless a default is registered for them.
func TestEnvAloneChangesNestedValue(t *testing.T) {
	t.Setenv("KLRING_TRAIN_LR", "0.125")
	t.Setenv("KLRING_CLUSTER_STEP_DEADLINE", "7s")
	t.Setenv("KLRING_DATA_SEED", "42")
	c, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.LR != 0.125 {
		t.Errorf("train.lr = %v; want 0.125 from KLRING_TRAIN_LR", c.Train.LR)
	}
	if c.Cluster.StepDeadline != 7*time.Second {
		t.Errorf("cluster.step_deadline = %v; want 7s", c.Cluster.StepDeadline)
	}
	if c.Data.Seed != 42 {
		t.Errorf("data.seed = %v; want 42", c.Data.Seed)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	file := writeFile(t, "train:\n  lr: 0.1\n  steps: 7\nmodel:\n  preset: small\n")
	t.Setenv("KLRING_TRAIN_LR", "0.2")
	c, err := Load(flags(t, "--config", file, "--model.preset", "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.Steps != 7 {
		t.Errorf("train.steps = %d; want 7 from the file", c.Train.Steps)
	}
	if c.Train.LR != 0.2 {
		t.Errorf("train.lr = %v; want 0.2 (env over file)", c.Train.LR)
	}
	if c.Model.Preset != "tiny" {
		t.Errorf("model.preset = %q; want tiny (flag over file)", c.Model.Preset)
	}
}

func TestVocabPadFromFileEnvFlag(t *testing.T) {
	c, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model.VocabPad != 0 {
		t.Errorf("model.vocab_pad default = %d; want 0 (no padding)", c.Model.VocabPad)
	}
	file := writeFile(t, "model:\n  vocab_pad: 64\n")
	if c, err = Load(flags(t, "--config", file)); err != nil || c.Model.VocabPad != 64 {
		t.Errorf("model.vocab_pad from the file = %d, %v; want 64", c.Model.VocabPad, err)
	}
	t.Setenv("KLRING_MODEL_VOCAB_PAD", "128")
	if c, err = Load(flags(t, "--config", file)); err != nil || c.Model.VocabPad != 128 {
		t.Errorf("model.vocab_pad from env over the file = %d, %v; want 128", c.Model.VocabPad, err)
	}
	if c, err = Load(flags(t, "--config", file, "--model.vocab_pad", "1")); err != nil || c.Model.VocabPad != 1 {
		t.Errorf("model.vocab_pad from the flag = %d, %v; want 1", c.Model.VocabPad, err)
	}
	t.Setenv("KLRING_MODEL_VOCAB_PAD", "-1")
	if _, err := Load(nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "model.vocab_pad = -1") {
		t.Errorf("Load(KLRING_MODEL_VOCAB_PAD=-1) = %v; want ErrInvalid naming model.vocab_pad", err)
	}
}

func TestUnknownFileKeyIsAnError(t *testing.T) {
	file := writeFile(t, "train:\n  lrr: 0.1\n")
	_, err := Load(flags(t, "--config", file))
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "train.lrr") {
		t.Fatalf("Load(unknown key) = %v; want ErrUnknownKey naming train.lrr", err)
	}
}

func TestWrongTypeIsAnError(t *testing.T) {
	file := writeFile(t, "train:\n  steps: many\n")
	_, err := Load(flags(t, "--config", file))
	if err == nil || !strings.Contains(err.Error(), "steps") {
		t.Fatalf("Load(steps: many) = %v; want an error naming steps", err)
	}
	t.Setenv("KLRING_TRAIN_LR", "fast")
	if _, err := Load(nil); err == nil || !strings.Contains(err.Error(), "lr") {
		t.Fatalf("Load(KLRING_TRAIN_LR=fast) = %v; want an error naming lr", err)
	}
}

func TestMissingFileIsAnError(t *testing.T) {
	if _, err := Load(flags(t, "--config", filepath.Join(t.TempDir(), "nope.yaml"))); err == nil {
		t.Fatal("Load(missing file) = nil error")
	}
}

func TestInvalidValuesNameKeyValueAndRule(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--job", "a.b"}, `job = "a.b": must match`},
		{[]string{"--job", "a b"}, `job = "a b"`},
		{[]string{"--train.lr", "-1"}, "train.lr = -1, want > 0"},
		{[]string{"--train.lr", "NaN"}, "train.lr = NaN"},
		{[]string{"--model.preset", "huge"}, `model.preset = "huge": must be one of tiny, small, custom`},
		{[]string{"--data.source", "csv:x"}, `data: source "csv:x", want synthetic`},
		{[]string{"--data.source", "synthetic:colour=2"}, `unknown setting "colour"`},
		{[]string{"--data.val_fraction", "0.9"}, "data.val_fraction = 0.9"},
		{[]string{"--loss.direction", "sideways"}, "loss.direction"},
		{[]string{"--loss.temperature", "0"}, "loss.temperature = 0: loss: invalid option: temperature 0"},
		{[]string{"--loss.direction", "reverse", "--loss.teacher", "t", "--loss.teacher_top_k", "8"}, "reverse KL"},
		{[]string{"--loss.direction", "jsd", "--loss.beta", "1.5"}, "loss.beta = 1.5: loss: invalid option: beta 1.5"},
		{[]string{"--loss.direction", "jsd", "--loss.teacher", "t", "--loss.teacher_top_k", "8", "--loss.teacher_tail", "rest"}, "rest is defined for forward KL only"},
		{[]string{"--train.steps", "0"}, "train.steps = 0"},
		{[]string{"--allreduce.deadline", "0s"}, "allreduce.deadline = 0s"},
		{[]string{"--allreduce.wire", "fp16"}, `allreduce.wire = "fp16": must be one of f32, bf16`},
		{[]string{"--allreduce.error_feedback"}, `allreduce.error_feedback = true: needs allreduce.wire = bf16 (allreduce.wire = "f32"`},
		{[]string{"--allreduce.bucket_bytes", "-1"}, "allreduce.bucket_bytes = -1: must be in [0, 1 GiB]"},
		{[]string{"--allreduce.bucket_bytes", "2147483648"}, "allreduce.bucket_bytes = 2147483648"},
		{[]string{"--cluster.workers", "0"}, "cluster.workers = 0"},
		{[]string{"--model.preset", "custom"}, "model.n_embd = 0: must be > 0 with model.preset = custom"},
		{[]string{"--model.vocab_pad", "-64"}, "model.vocab_pad = -64: must be in [0, 65536]"},
		{[]string{"--model.vocab_pad", "65537"}, "model.vocab_pad = 65537: must be in [0, 65536]"},
		{[]string{"--model.n_embd", "130", "--model.n_head", "4"}, "model.n_embd = 130: must be a multiple of model.n_head = 4"},
		{[]string{"--nats.user", "u"}, "nats.user"},
		{[]string{"--nats.tls_cert", "w.pem"}, `nats.tls_cert = "w.pem": nats.tls_cert and nats.tls_key must be set together`},
		{[]string{"--nats.tls_key", "w-key.pem"}, `nats.tls_key = "w-key.pem"`},
	}
	for _, tt := range tests {
		_, err := Load(flags(t, tt.args...))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%v) = %v; want ErrInvalid containing %q", tt.args, err, tt.want)
		}
	}
}

func TestEveryKeyHasAFlagAndDecodes(t *testing.T) {
	fs := flags(t)
	for _, k := range Keys() {
		if fs.Lookup(k.Name) == nil {
			t.Errorf("key %s has no flag", k.Name)
		}
	}
	// Setting every key through the environment decodes without unknown keys.
	t.Setenv("KLRING_RUN_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("KLRING_ALLREDUCE_CHUNK_BYTES", "4096")
	c, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Run.MetricsAddr != "127.0.0.1:0" || c.AllReduce.ChunkBytes != 4096 || c.AllReduce.Wire != "f32" || c.AllReduce.ErrorFeedback {
		t.Errorf("env values not decoded: %+v %+v", c.Run, c.AllReduce)
	}
}

func TestNATSTLSKeys(t *testing.T) {
	t.Setenv("KLRING_NATS_TLS_CA", "/certs/ca.pem")
	t.Setenv("KLRING_NATS_TLS_CERT", "/certs/worker.pem")
	file := writeFile(t, "nats:\n  url: tls://head.example.com:4222\n  tls_key: /certs/worker-key.pem\n")
	c, err := Load(flags(t, "--config", file))
	if err != nil {
		t.Fatal(err)
	}
	want := NATS{URL: "tls://head.example.com:4222", TLSCA: "/certs/ca.pem", TLSCert: "/certs/worker.pem", TLSKey: "/certs/worker-key.pem",
		Listen: "127.0.0.1:0", ClusterName: "klring", Servers: 1}
	if c.NATS != want {
		t.Errorf("nats = %+v; want %+v", c.NATS, want)
	}
}

func TestNATSClusterKeys(t *testing.T) {
	t.Setenv("KLRING_NATS_ROUTES", "nats-route://n1:6222,nats-route://n2:6222")
	t.Setenv("KLRING_NATS_EMBED", "true")
	c, err := Load(flags(t, "--nats.server_name", "n0", "--nats.cluster_listen", "0.0.0.0:6222", "--nats.cluster_user", "route",
		"--nats.cluster_password", "pw", "--nats.servers", "3"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.NATS.Embed || c.NATS.Routes != "nats-route://n1:6222,nats-route://n2:6222" || c.NATS.ServerName != "n0" ||
		c.NATS.ClusterListen != "0.0.0.0:6222" || c.NATS.ClusterUser != "route" || c.NATS.ClusterPassword != "pw" || c.NATS.Servers != 3 {
		t.Errorf("nats = %+v", c.NATS)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats.servers", "0"}, "nats.servers = 0"},
		{[]string{"--nats.cluster_user", "route"}, "nats.cluster_user"},
		{[]string{"--nats.cluster_listen", "6222"}, "nats.cluster_listen"},
		{[]string{"--nats.embed", "--nats.listen", ""}, "nats.listen"},
	} {
		if _, err := Load(flags(t, tc.args...)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%v) = %v; want ErrInvalid naming %q", tc.args, err, tc.want)
		}
	}
}

func TestAllReduceWireKeys(t *testing.T) {
	t.Setenv("KLRING_ALLREDUCE_ERROR_FEEDBACK", "true")
	c, err := Load(flags(t, "--allreduce.wire", "bf16"))
	if err != nil {
		t.Fatal(err)
	}
	if c.AllReduce.Wire != "bf16" || !c.AllReduce.ErrorFeedback {
		t.Errorf("allreduce = %+v; want bf16 with error feedback", c.AllReduce)
	}
	file := writeFile(t, "allreduce:\n  wire: bf16\n  error_feedback: false\n")
	t.Setenv("KLRING_ALLREDUCE_ERROR_FEEDBACK", "")
	if c, err := Load(flags(t, "--config", file)); err != nil || c.AllReduce.Wire != "bf16" || c.AllReduce.ErrorFeedback {
		t.Errorf("Load(%s) = %+v, %v; want bf16 without error feedback", file, c.AllReduce, err)
	}
}

func TestAllReduceBucketBytes(t *testing.T) {
	c, err := Load(flags(t))
	if err != nil || c.AllReduce.BucketBytes != 256<<10 {
		t.Fatalf("default allreduce.bucket_bytes = %d, %v; want 256 KiB", c.AllReduce.BucketBytes, err)
	}
	t.Setenv("KLRING_ALLREDUCE_BUCKET_BYTES", "65536")
	if c, err := Load(flags(t)); err != nil || c.AllReduce.BucketBytes != 65536 {
		t.Errorf("from the environment: %d, %v; want 65536", c.AllReduce.BucketBytes, err)
	}
	if c, err := Load(flags(t, "--allreduce.bucket_bytes", "0")); err != nil || c.AllReduce.BucketBytes != 0 {
		t.Errorf("from a flag: %d, %v; want 0", c.AllReduce.BucketBytes, err)
	}
	t.Setenv("KLRING_ALLREDUCE_BUCKET_BYTES", "")
	file := writeFile(t, "allreduce:\n  bucket_bytes: 262144\n")
	if c, err := Load(flags(t, "--config", file)); err != nil || c.AllReduce.BucketBytes != 262144 {
		t.Errorf("from a file: %d, %v; want 262144", c.AllReduce.BucketBytes, err)
	}
}

// The loss section: an option that would run without effect is an error
// naming its key; loss's own range checks name the key; a mistake is
// reported once; the on-policy prefix is checked against a known context.
func TestLossSectionNamesKeysAndRefusesUnusedOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string // each in the error; "" for no error
		errs int      // the number of errors joined (0: any)
	}{
		// Teacher options without a teacher.
		{"top k, no teacher", []string{"--loss.teacher_top_k", "8"},
			[]string{"loss.teacher_top_k = 8: needs loss.teacher or loss.teacher_store"}, 1},
		{"teacher temperature, no teacher", []string{"--loss.teacher_temperature", "2"},
			[]string{"loss.teacher_temperature = 2: needs loss.teacher or loss.teacher_store"}, 1},
		{"teacher tail, no teacher", []string{"--loss.teacher_tail", "uniform"},
			[]string{"loss.teacher_tail = uniform: needs loss.teacher or loss.teacher_store"}, 1},
		{"all three, no teacher", []string{"--loss.teacher_top_k", "8", "--loss.teacher_temperature", "2", "--loss.teacher_tail", "rest"},
			[]string{"loss.teacher_top_k = 8", "loss.teacher_temperature = 2", "loss.teacher_tail = rest"}, 3},
		{"defaults, no teacher", []string{"--loss.teacher_top_k", "0", "--loss.teacher_temperature", "0", "--loss.teacher_tail", "renormalize"}, []string{""}, 0},
		{"top k with a teacher", []string{"--loss.teacher", "t", "--loss.teacher_top_k", "8", "--loss.teacher_temperature", "2", "--loss.teacher_tail", "uniform"}, []string{""}, 0},
		{"top k with a store", []string{"--loss.teacher_store", "s", "--loss.teacher_top_k", "8", "--loss.teacher_temperature", "2"}, []string{""}, 0},

		// loss.beta is read by JSD only.
		{"beta, forward", []string{"--loss.beta", "0.3"},
			[]string{"loss.beta = 0.3: is read by loss.direction = jsd only (loss.direction = forward ignores it)"}, 1},
		{"beta, reverse", []string{"--loss.direction", "reverse", "--loss.label_smoothing", "0.1", "--loss.beta", "1"},
			[]string{"loss.beta = 1: is read by loss.direction = jsd only (loss.direction = reverse ignores it)"}, 1},
		{"beta out of range, forward", []string{"--loss.beta", "1.5"}, []string{"loss.beta = 1.5: is read by loss.direction = jsd only"}, 1},
		{"default beta, forward", []string{"--loss.beta", "0.5"}, []string{""}, 0},
		{"beta, jsd", []string{"--loss.direction", "jsd", "--loss.beta", "0.3"}, []string{""}, 0},
		{"beta out of range, jsd", []string{"--loss.direction", "jsd", "--loss.beta", "1.5"}, []string{"loss.beta = 1.5: loss: invalid option: beta 1.5"}, 1},

		// On-policy options while on-policy training is off.
		{"prefix, off", []string{"--loss.on_policy_prefix", "64"},
			[]string{"loss.on_policy_prefix = 64: has no effect with loss.on_policy = 0"}, 1},
		{"temperature, off", []string{"--loss.on_policy_temperature", "0.7"},
			[]string{"loss.on_policy_temperature = 0.7: has no effect with loss.on_policy = 0"}, 1},
		{"negative prefix, off", []string{"--loss.on_policy_prefix", "-1"}, []string{"loss.on_policy_prefix = -1: must be >= 0"}, 1},
		{"zero temperature, off", []string{"--loss.on_policy_temperature", "0"}, []string{"loss.on_policy_temperature = 0: must be a finite number > 0"}, 1},
		{"prefix and temperature, on", []string{"--loss.on_policy", "0.5", "--loss.on_policy_prefix", "64", "--loss.on_policy_temperature", "0.7"}, []string{""}, 0},
		{"defaults, off", []string{"--loss.on_policy", "0", "--loss.on_policy_prefix", "0", "--loss.on_policy_temperature", "1"}, []string{""}, 0},

		// The prefix against the context, where it is known.
		{"prefix at the preset's context", []string{"--loss.on_policy", "0.5", "--loss.on_policy_prefix", "128"},
			[]string{"loss.on_policy_prefix = 128: must be in [1, 127], below the context 128 (model.preset tiny)"}, 1},
		{"prefix beyond the preset's context", []string{"--loss.on_policy", "0.5", "--loss.on_policy_prefix", "500"},
			[]string{"loss.on_policy_prefix = 500: must be in [1, 127]"}, 1},
		{"prefix within small's context", []string{"--model.preset", "small", "--loss.on_policy", "0.5", "--loss.on_policy_prefix", "200"}, []string{""}, 0},
		{"prefix beyond model.ctx", []string{"--model.ctx", "64", "--loss.on_policy", "0.5", "--loss.on_policy_prefix", "64"},
			[]string{"loss.on_policy_prefix = 64: must be in [1, 63], below the context 64 (model.ctx)"}, 1},
		{"prefix within model.ctx", []string{"--model.ctx", "64", "--loss.on_policy", "0.5", "--loss.on_policy_prefix", "63"}, []string{""}, 0},
		{"context 1", []string{"--model.ctx", "1", "--loss.on_policy", "0.5"},
			[]string{"loss.on_policy = 0.5: needs a context of at least 2 tokens"}, 1},
		{"context from model.init: left to the engine", []string{"--model.init", "m", "--loss.on_policy", "0.5", "--loss.on_policy_prefix", "500"}, []string{""}, 0},
		{"model.ctx with model.init", []string{"--model.init", "m", "--model.ctx", "32", "--loss.on_policy", "0.5", "--loss.on_policy_prefix", "500"},
			[]string{"loss.on_policy_prefix = 500: must be in [1, 31], below the context 32 (model.ctx)"}, 1},

		// loss's own checks name the key.
		{"temperature 0", []string{"--loss.temperature", "0"}, []string{"loss.temperature = 0: loss: invalid option: temperature 0"}, 1},
		{"label smoothing 1", []string{"--loss.label_smoothing", "1"}, []string{"loss.label_smoothing = 1: loss: invalid option: label smoothing 1"}, 1},
		{"hard weight 2", []string{"--loss.hard_weight", "2"}, []string{"loss.hard_weight = 2: loss: invalid option: hard weight 2"}, 1},
		{"teacher temperature -1", []string{"--loss.teacher", "t", "--loss.teacher_temperature", "-1"},
			[]string{"loss.teacher_temperature = -1: loss: invalid option: teacher temperature -1"}, 1},
		{"two bad keys, both named", []string{"--loss.temperature", "0", "--loss.hard_weight", "2"},
			[]string{"loss.temperature = 0", "loss.hard_weight = 2"}, 2},
		{"rest tail with jsd", []string{"--loss.direction", "jsd", "--loss.teacher", "t", "--loss.teacher_top_k", "8", "--loss.teacher_tail", "rest"},
			[]string{"loss.teacher_tail = rest: loss: invalid option: teacher tail rest is defined for forward KL only"}, 1},
		{"renormalized reverse", []string{"--loss.direction", "reverse", "--loss.teacher", "t", "--loss.teacher_top_k", "8"},
			[]string{"loss.teacher_tail = renormalize: loss: invalid option: reverse KL against a renormalized top-8 target is infinite (it gives 0 to every id outside its top k)"}, 1},

		// One mistake, one error.
		{"negative top k, no teacher", []string{"--loss.teacher_top_k", "-3"}, []string{"loss.teacher_top_k = -3"}, 1},
		{"negative top k, teacher", []string{"--loss.teacher", "t", "--loss.teacher_top_k", "-3"}, []string{"loss.teacher_top_k = -3: loss: invalid option: teacher top k -3"}, 1},
	} {
		_, err := Load(flags(t, tc.args...))
		if tc.want[0] == "" {
			if err != nil {
				t.Errorf("%s: Load(%v) = %v; want no error", tc.name, tc.args, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Load(%v) = %v; want ErrInvalid", tc.name, tc.args, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Load(%v) = %v; want it to say %q", tc.name, tc.args, err, w)
			}
		}
		if n := strings.Count(err.Error(), ErrInvalid.Error()); tc.errs > 0 && n != tc.errs {
			t.Errorf("%s: Load(%v) gave %d errors; want %d:\n%v", tc.name, tc.args, n, tc.errs, err)
		}
	}
}

// Every key the loss checks compare with its default is a key (isDefault
// reads Keys).
func TestLossDefaultsAreTheKeys(t *testing.T) {
	c, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	for key, v := range map[string]any{"loss.beta": c.Loss.Beta, "loss.teacher_top_k": c.Loss.TeacherTopK,
		"loss.teacher_temperature": c.Loss.TeacherTemperature, "loss.teacher_tail": c.Loss.TeacherTail,
		"loss.on_policy_prefix": c.Loss.OnPolicyPrefix, "loss.on_policy_temperature": c.Loss.OnPolicyTemp} {
		if !isDefault(key, v) {
			t.Errorf("isDefault(%s, %v) = false for the default configuration", key, v)
		}
	}
}
