package config

import (
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// A scalar or a list where a section belongs is an error naming the section
// and the value; an empty section is not.
func TestSectionGivenAValueIsAnError(t *testing.T) {
	tests := []struct {
		body string
		args []string
		want string // "" means Load succeeds
	}{
		{"train: 5\n", nil, "train: want a section (a map of keys), got 5"},
		{"train: 5\n", []string{"--train.lr", "0.1"}, "train: want a section (a map of keys), got 5"},
		{"nats: \"nats://x:4222\"\n", nil, `nats: want a section (a map of keys), got "nats://x:4222"`},
		{"model: [1, 2]\n", nil, "model: want a section (a map of keys), got [1 2]"},
		{"cluster: true\ntrain:\n  steps: 3\n", nil, "cluster: want a section (a map of keys), got true"},
		{"train:\n", nil, ""},
		{"train: {}\n", nil, ""},
		{"train:\n  steps: 3\nmodel:\n  preset: small\n", nil, ""},
	}
	for _, tt := range tests {
		args := append([]string{"--config", writeFile(t, tt.body)}, tt.args...)
		_, err := Load(flags(t, args...))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Load(%q, %v) = %v; want no error", tt.body, tt.args, err)
		case tt.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Load(%q, %v) = %v; want ErrInvalid containing %q", tt.body, tt.args, err, tt.want)
		}
	}
}

// Integer keys take whole numbers in their type's range only: no silent
// truncation of fractions, wrap-around of big values or of negatives into
// unsigned keys, whether the value comes from the file (YAML numbers) or the
// environment (strings).
func TestIntegerKeysRejectLossyValues(t *testing.T) {
	tests := []struct {
		name string
		body string            // the file, if not ""
		env  map[string]string // environment variables
		want []string          // all in the error
	}{
		{"fraction", "train:\n  batch_windows: 16.7\n", nil, []string{"train.batch_windows", "16.7", "not a whole number"}},
		{"negative fraction", "model:\n  vocab: -0.5\n", nil, []string{"model.vocab", "-0.5", "not a whole number"}},
		{"float too big", "train:\n  batch_windows: 100000000000000000000\n", nil, []string{"train.batch_windows", "1e+20", "out of range"}},
		{"float 2^63", "train:\n  steps: 9223372036854775808.0\n", nil, []string{"train.steps", "out of range"}},
		{"float too small", "train:\n  steps: -1e300\n", nil, []string{"train.steps", "-1e+300", "out of range"}},
		{"uint64 into int", "train:\n  steps: 9223372036854775808\n", nil, []string{"train.steps", "9223372036854775808", "out of range"}},
		{"NaN", "train:\n  steps: .nan\n", nil, []string{"train.steps", "NaN", "not a whole number"}},
		{"infinity", "train:\n  steps: .inf\n", nil, []string{"train.steps", "+Inf", "out of range"}},
		{"negative unsigned", "data:\n  seed: -1\n", nil, []string{"data.seed", "-1", "negative"}},
		{"negative unsigned float", "train:\n  seed: -3.0\n", nil, []string{"train.seed", "-3", "negative"}},
		{"unsigned float 2^64", "data:\n  seed: 18446744073709551616\n", nil, []string{"data.seed", "1.8446744073709552e+19", "out of range"}},
		{"unsigned fraction", "data:\n  seed: 1.5\n", nil, []string{"data.seed", "1.5", "not a whole number"}},
		{"string fraction in file", "train:\n  steps: \"16.7\"\n", nil, []string{"train.steps", `"16.7"`, "not a whole number"}},
		{"env too big", "", map[string]string{"KLRING_TRAIN_BATCH_WINDOWS": "100000000000000000000"}, []string{"train.batch_windows", `"100000000000000000000"`, "out of range"}},
		{"env fraction", "", map[string]string{"KLRING_TRAIN_BATCH_WINDOWS": "16.7"}, []string{"train.batch_windows", `"16.7"`, "not a whole number"}},
		{"env negative unsigned", "", map[string]string{"KLRING_DATA_SEED": "-1"}, []string{"data.seed", `"-1"`, "negative"}},
		{"env unsigned too big", "", map[string]string{"KLRING_TRAIN_SEED": "18446744073709551616"}, []string{"train.seed", `"18446744073709551616"`, "out of range"}},
		{"env not a number", "", map[string]string{"KLRING_TRAIN_STEPS": "many"}, []string{"train.steps", `"many"`, "want an integer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var args []string
			if tt.body != "" {
				args = []string{"--config", writeFile(t, tt.body)}
			}
			c, err := Load(flags(t, args...))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load = %+v, %v; want ErrInvalid", c.Train, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load = %v; want it to contain %q", err, w)
				}
			}
		})
	}
}

// Every way of giving a valid integer or duration keeps working.
func TestValidNumbersStillDecode(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		env   map[string]string
		args  []string
		check func(c Config) bool
	}{
		{"file ints", "train:\n  steps: 7\n  batch_windows: 24\n", nil, nil,
			func(c Config) bool { return c.Train.Steps == 7 && c.Train.BatchWindows == 24 }},
		{"file whole float", "train:\n  batch_windows: 16.0\n  steps: 1e3\n", nil, nil,
			func(c Config) bool { return c.Train.BatchWindows == 16 && c.Train.Steps == 1000 }},
		{"file max uint64", "data:\n  seed: 18446744073709551615\n", nil, nil,
			func(c Config) bool { return c.Data.Seed == math.MaxUint64 }},
		{"file string numbers", "data:\n  seed: \"42\"\ntrain:\n  steps: \"0x10\"\n", nil, nil,
			func(c Config) bool { return c.Data.Seed == 42 && c.Train.Steps == 16 }},
		{"file zero", "train:\n  micro_windows: 0\n  seed: 0\n", nil, nil,
			func(c Config) bool { return c.Train.MicroWindows == 0 && c.Train.Seed == 0 }},
		{"file durations", "allreduce:\n  deadline: 3s\ncluster:\n  step_deadline: \"1m30s\"\n", nil, nil,
			func(c Config) bool {
				return c.AllReduce.Deadline == 3*time.Second && c.Cluster.StepDeadline == 90*time.Second
			}},
		{"file floats", "train:\n  lr: 1\n  min_lr: 1e-5\n", nil, nil,
			func(c Config) bool { return c.Train.LR == 1 && c.Train.MinLR == 1e-5 }},
		{"file text values", "loss:\n  direction: reverse\n  target: hard\n", nil, nil,
			func(c Config) bool { return c.Loss.Direction.String() == "reverse" && c.Loss.Target.String() == "hard" }},
		{"env numbers", "", map[string]string{"KLRING_TRAIN_BATCH_WINDOWS": "24", "KLRING_DATA_SEED": "18446744073709551615",
			"KLRING_TRAIN_LR": "1e-3", "KLRING_ALLREDUCE_DEADLINE": "3s", "KLRING_MODEL_VOCAB": "0"}, nil,
			func(c Config) bool {
				return c.Train.BatchWindows == 24 && c.Data.Seed == math.MaxUint64 && c.Train.LR == 1e-3 &&
					c.AllReduce.Deadline == 3*time.Second && c.Model.Vocab == 0
			}},
		{"flags", "", nil, []string{"--train.steps", "9", "--data.seed", "18446744073709551615", "--cluster.heartbeat", "250ms", "--train.lr", "0.5"},
			func(c Config) bool {
				return c.Train.Steps == 9 && c.Data.Seed == math.MaxUint64 && c.Cluster.Heartbeat == 250*time.Millisecond && c.Train.LR == 0.5
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := tt.args
			if tt.body != "" {
				args = append([]string{"--config", writeFile(t, tt.body)}, args...)
			}
			c, err := Load(flags(t, args...))
			if err != nil {
				t.Fatalf("Load = %v; want no error", err)
			}
			if !tt.check(c) {
				t.Errorf("Load = %+v", c)
			}
		})
	}
}

// The hook at the boundaries of narrower types than klring's keys use.
func TestStrictIntegersHookBounds(t *testing.T) {
	type target struct {
		I8  int8
		U8  uint8
		I64 int64
		U64 uint64
		D   time.Duration
	}
	tests := []struct {
		field string
		in    any
		ok    bool
	}{
		{"I8", 127, true}, {"I8", 128, false}, {"I8", -128, true}, {"I8", -129, false},
		{"I8", 127.0, true}, {"I8", 127.5, false}, {"I8", -128.0, true}, {"I8", -129.0, false},
		{"I8", "-128", true}, {"I8", "128", false}, {"I8", uint64(127), true}, {"I8", uint64(200), false},
		{"U8", 255, true}, {"U8", 256, false}, {"U8", -1, false}, {"U8", 255.0, true}, {"U8", 256.0, false},
		{"U8", "255", true}, {"U8", "256", false}, {"U8", "-0", true}, {"U8", "-1", false},
		{"I64", math.MinInt64, true}, {"I64", float64(math.MinInt64), true}, {"I64", float64(1 << 63), false},
		{"I64", uint64(math.MaxInt64), true}, {"I64", uint64(math.MaxInt64) + 1, false},
		{"I64", "9223372036854775807", true}, {"I64", "9223372036854775808", false}, {"I64", "-9223372036854775809", false},
		{"I64", math.Inf(-1), false}, {"I64", math.NaN(), false}, {"I64", float32(2.5), false}, {"I64", float32(2), true},
		{"U64", uint64(math.MaxUint64), true}, {"U64", math.Ldexp(1, 64), false}, {"U64", math.Ldexp(1, 64) - 2048, true},
		{"U64", math.MinInt64, false}, {"U64", "18446744073709551615", true}, {"U64", "18446744073709551616", false},
		{"D", "1.5s", true}, {"D", 1.5, false}, {"D", 10, true},
	}
	for _, tt := range tests {
		var out target
		d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
			DecodeHook:       decodeHook(),
			WeaklyTypedInput: true,
			Result:           &out,
		})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Decode(map[string]any{tt.field: tt.in})
		if (err == nil) != tt.ok {
			t.Errorf("decoding %s = %#v: %v; want ok %v", tt.field, tt.in, err, tt.ok)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), tt.field) {
			t.Errorf("decoding %s = %#v: %v; want the error to name %s", tt.field, tt.in, err, tt.field)
		}
		if tt.ok {
			got, _ := asFloat(reflect.ValueOf(out).FieldByName(tt.field))
			if want, isNum := asFloat(reflect.ValueOf(tt.in)); isNum && got != want {
				t.Errorf("decoding %s = %#v gave %v", tt.field, tt.in, got)
			}
		}
	}
}

func asFloat(v reflect.Value) (float64, bool) {
	switch {
	case v.CanInt():
		return float64(v.Int()), true
	case v.CanUint():
		return float64(v.Uint()), true
	case v.CanFloat():
		return v.Float(), true
	}
	return 0, false
}

// A KLRING_ variable that names no key is an error naming it; one that is
// empty, or one of the deployment's own variables, is not.
func TestUnknownEnvironmentVariableIsAnError(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want []string // "" : Load succeeds
	}{
		{map[string]string{"KLRING_TRAIN_STEPZ": "5"}, []string{"KLRING_TRAIN_STEPZ"}},
		{map[string]string{"KLRING_TRAIN": "5"}, []string{"KLRING_TRAIN"}},
		{map[string]string{"KLRING_TRAINSTEPS": "5", "KLRING_TRAIN_STEPS": "5"}, []string{"KLRING_TRAINSTEPS"}},
		{map[string]string{"KLRING_train_steps": "5"}, []string{"KLRING_train_steps"}},
		{map[string]string{"KLRING_NATS_URL_": "nats://x:4222", "KLRING_LR": "1"}, []string{"KLRING_LR, KLRING_NATS_URL_"}},
		{map[string]string{"KLRING_TRAIN_STEPZ": ""}, nil},
		{map[string]string{"KLRINGX_TRAIN": "5", "XKLRING_TRAIN": "5", "KLRING": "5"}, nil},
		{map[string]string{"KLRING_TRAIN_STEPS": "5", "KLRING_NATS_TLS_CA": "/ca.pem"}, nil},
		{map[string]string{ // the deployment's variables (.env.example, scripts)
			"KLRING_IMAGE_TAG": "v1", "KLRING_CERTS_DIR": "./certs", "KLRING_HEAD_URL": "tls://h:4222",
			"KLRING_COORDINATOR_NATS_USER": "c", "KLRING_COORDINATOR_NATS_PASSWORD": "p",
			"KLRING_WORKER_NATS_USER": "w", "KLRING_WORKER_NATS_PASSWORD": "p",
			"KLRING_ROUTE_USER": "r", "KLRING_ROUTE_PASSWORD": "p",
			"KLRING_NATS_PUBLISH": "4222", "KLRING_METRICS_PUBLISH": "127.0.0.1:9090",
			"KLRING_BIN_DIR": "bin", "KLRING_SKIP_GO": "1",
		}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(slices.Sorted(maps.Keys(tt.env)), ","), func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := Load(nil)
			switch {
			case tt.want == nil && err != nil:
				t.Errorf("Load(env %v) = %v; want no error", tt.env, err)
			case tt.want != nil && !errors.Is(err, ErrUnknownKey):
				t.Errorf("Load(env %v) = %v; want ErrUnknownKey", tt.env, err)
			case tt.want != nil:
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Load(env %v) = %v; want it to contain %q", tt.env, err, w)
					}
				}
			}
		})
	}
}

// Every KLRING_ variable that the repository's deployment files and scripts
// set or read is either a key's or allow-listed, so that none of them makes
// Load fail.
func TestRepositoryEnvironmentVariablesAreKnown(t *testing.T) {
	var files []string
	for _, pattern := range []string{"../docker-compose*.yml", "../.env.example", "../scripts/*.sh", "../docker/*"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Skip("no deployment files next to the package")
	}
	known := knownEnv()
	name := regexp.MustCompile(`\bKLRING_[A-Z0-9_]*\*?`) // KLRING_X_* in prose is a pattern, not a name
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, v := range name.FindAllString(string(b), -1) {
			if strings.HasSuffix(v, "*") || strings.HasSuffix(v, "_") || seen[v] {
				continue
			}
			seen[v] = true
			if !known[v] {
				t.Errorf("%s uses %s, which is neither a key's variable nor in nonKeyEnv", f, v)
			}
		}
	}
}
