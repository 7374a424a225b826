package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// AddFlags registers one flag per key on fs (named as the key, e.g.
// --train.lr), with the key's default and help text, and the --config flag.
func AddFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML configuration file (keys as listed here; KLRING_* environment variables and flags override it)")
	for _, k := range Keys() {
		switch d := k.Default.(type) {
		case string:
			fs.String(k.Name, d, k.Usage)
		case int:
			fs.Int(k.Name, d, k.Usage)
		case uint64:
			fs.Uint64(k.Name, d, k.Usage)
		case float64:
			fs.Float64(k.Name, d, k.Usage)
		case bool:
			fs.Bool(k.Name, d, k.Usage)
		case time.Duration:
			fs.Duration(k.Name, d, k.Usage)
		default:
			panic(fmt.Sprintf("config: key %s has a default of unsupported type %T", k.Name, d))
		}
	}
}

// Load builds the configuration from the defaults, the file named by the
// --config flag (if any), KLRING_* environment variables and the flags set on fs
// (fs may be nil). It decodes strictly and validates.
func Load(fs *pflag.FlagSet) (Config, error) {
	c, err := Decode(fs)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Decode reads the configuration as Load does (file, environment, flags,
// decoded strictly) but does not Validate it: for a caller that validates
// each configuration it derives from this one instead (compare, whose
// shared flags may only make sense with the settings it varies).
func Decode(fs *pflag.FlagSet) (Config, error) {
	if err := checkEnv(os.Environ()); err != nil {
		return Config{}, fmt.Errorf("config: environment: %w", err)
	}
	v := viper.New()
	for _, k := range Keys() {
		v.SetDefault(k.Name, k.Default)
	}
	v.SetEnvPrefix(envPrefix) // with the replacer, as envName
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	if fs != nil {
		// Only flags the user set override; the others leave file and env alone.
		var err error
		fs.Visit(func(f *pflag.Flag) {
			if err != nil || f.Name == "config" {
				return
			}
			if isKey(f.Name) {
				err = v.BindPFlag(f.Name, f)
			}
		})
		if err != nil {
			return Config{}, fmt.Errorf("config: binding flags: %w", err)
		}
		if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
			v.SetConfigFile(f.Value.String())
			v.SetConfigType("yaml")
			if err := v.ReadInConfig(); err != nil {
				return Config{}, fmt.Errorf("config: reading %s: %w", f.Value.String(), err)
			}
			if err := checkFileKeys(v); err != nil {
				return Config{}, fmt.Errorf("config: %s: %w", f.Value.String(), err)
			}
		}
	}

	var c Config
	if err := v.UnmarshalExact(&c, viper.DecodeHook(decodeHook())); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c, nil
}

// envPrefix is the prefix of the keys' environment variables (envName).
const envPrefix = "KLRING"

// envName is the environment variable of a key, as viper looks it up:
// train.lr is KLRING_TRAIN_LR.
func envName(key string) string {
	return strings.ToUpper(envPrefix + "_" + strings.ReplaceAll(key, ".", "_"))
}

// nonKeyEnv lists the variables with the prefix that are no key's but that
// klring's own deployment files and scripts use, so that a shell which has
// them (one that sourced .env, say) can still run the programs. Keep it in
// step with them (TestRepositoryEnvironmentVariablesAreKnown checks).
func nonKeyEnv() []string {
	return []string{
		// docker-compose*.yml and .env.example: values compose substitutes
		// (image tag, certificate folder, published ports, the head's URL, the
		// roles' NATS users and passwords, the route user and password).
		"KLRING_IMAGE_TAG", "KLRING_CERTS_DIR", "KLRING_NATS_PUBLISH", "KLRING_METRICS_PUBLISH", "KLRING_HEAD_URL",
		"KLRING_COORDINATOR_NATS_USER", "KLRING_COORDINATOR_NATS_PASSWORD",
		"KLRING_WORKER_NATS_USER", "KLRING_WORKER_NATS_PASSWORD",
		"KLRING_ROUTE_USER", "KLRING_ROUTE_PASSWORD",
		// scripts/build-images.sh and the e2e scripts: where the binaries are
		// and whether to build them.
		"KLRING_BIN_DIR", "KLRING_SKIP_GO",
	}
}

// knownEnv is the set of the variables with the prefix that Load accepts:
// the keys' and nonKeyEnv.
func knownEnv() map[string]bool {
	known := map[string]bool{}
	for _, k := range Keys() {
		known[envName(k.Name)] = true
	}
	for _, name := range nonKeyEnv() {
		known[name] = true
	}
	return known
}

// checkEnv rejects the variables of environ (as os.Environ) that have the
// prefix but name no key, such as a misspelt KLRING_TRAIN_STEPZ, which viper
// would ignore. Empty ones are left alone: viper ignores them too.
func checkEnv(environ []string) error {
	known := knownEnv()
	var unknown []string
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix+"_") && val != "" && !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("%w: variable(s) %s name no key (the key train.lr is %s)",
			ErrUnknownKey, strings.Join(unknown, ", "), envName("train.lr"))
	}
	return nil
}

func isKey(name string) bool {
	for _, k := range Keys() {
		if k.Name == name {
			return true
		}
	}
	return false
}

// keyNames returns the names of the keys and of the sections that hold them
// (train for train.lr).
func keyNames() (keys, sections map[string]bool) {
	keys, sections = map[string]bool{}, map[string]bool{}
	for _, k := range Keys() {
		keys[k.Name] = true
		for p := k.Name; strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			sections[p] = true
		}
	}
	return keys, sections
}

// checkFileKeys rejects keys in the file that klring does not know, with their
// names (UnmarshalExact alone reports them less clearly), and a section given
// a value instead of keys (train: 5). An empty section (train:) is fine.
func checkFileKeys(v *viper.Viper) error {
	keys, sections := keyNames()
	var errs, unknown []string
	for _, k := range v.AllKeys() {
		switch {
		case keys[k]:
		case sections[k]:
			switch val := v.Get(k).(type) {
			case nil, map[string]any:
			case string:
				errs = append(errs, fmt.Sprintf("%s: want a section (a map of keys), got %q", k, val))
			default:
				errs = append(errs, fmt.Sprintf("%s: want a section (a map of keys), got %v", k, val))
			}
		default:
			unknown = append(unknown, k)
		}
	}
	var err error
	if len(errs) > 0 {
		sort.Strings(errs)
		err = fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		err = errors.Join(err, fmt.Errorf("%w: unknown key(s) %s", ErrUnknownKey, strings.Join(unknown, ", ")))
	}
	return err
}

// decodeHook converts the values of the file, the environment and the flags
// for the fields of Config: text (loss.direction...), durations, then
// integers, which strictIntegers checks.
func decodeHook() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(
		mapstructure.TextUnmarshallerHookFunc(), mapstructure.StringToTimeDurationHookFunc(), strictIntegers)
}

// strictIntegers passes a value bound for an integer field on as an int64 or
// uint64 if it is a whole number in the field's range, and fails otherwise:
// viper decodes weakly, and mapstructure would truncate 16.7 to 16, turn
// 1e20 into -2^63 and -1 into 2^64-1 for an unsigned field. Numbers may come
// as YAML ints, uints and floats or as strings (environment, flags; Go
// integer syntax, or a float such as 1e3 that is whole). mapstructure puts
// the key before the error. Values for other fields, bools and the empty
// string (0, as before) pass unchanged.
func strictIntegers(from, to reflect.Value) (any, error) {
	if !from.IsValid() {
		return nil, nil
	}
	data := from.Interface()
	var bits int
	var signed bool
	switch to.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits, signed = to.Type().Bits(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits = to.Type().Bits()
	default:
		return data, nil
	}
	lo, hi := new(big.Int), new(big.Int).Lsh(big.NewInt(1), uint(bits)) // [lo, hi)
	if signed {
		hi.Rsh(hi, 1)
		lo.Neg(hi)
	}

	var n *big.Int
	shown := fmt.Sprint(data)
	switch from.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n = big.NewInt(from.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n = new(big.Int).SetUint64(from.Uint())
	case reflect.Float32, reflect.Float64:
		var err error
		if n, err = wholeNumber(from.Float(), shown); err != nil {
			return nil, err
		}
	case reflect.String:
		s := from.String()
		if s == "" {
			return data, nil
		}
		shown = strconv.Quote(s)
		var ok bool
		if n, ok = new(big.Int).SetString(s, 0); !ok {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("= %s: want an integer", shown)
			}
			if n, err = wholeNumber(f, shown); err != nil {
				return nil, err
			}
		}
	default:
		return data, nil
	}
	if n.Cmp(lo) < 0 || n.Cmp(hi) >= 0 {
		if !signed && n.Sign() < 0 {
			return nil, fmt.Errorf("= %s: negative, want an integer in [0, %v]", shown, new(big.Int).Sub(hi, big.NewInt(1)))
		}
		return nil, fmt.Errorf("= %s: out of range, want an integer in [%v, %v]", shown, lo, new(big.Int).Sub(hi, big.NewInt(1)))
	}
	if signed {
		return n.Int64(), nil
	}
	return n.Uint64(), nil
}

// wholeNumber is f as an integer if it is whole and finite (its magnitude is
// checked against the field's range by the caller, on the exact integer).
func wholeNumber(f float64, shown string) (*big.Int, error) {
	switch {
	case math.IsInf(f, 0):
		return nil, fmt.Errorf("= %s: out of range, want an integer", shown)
	case f != math.Trunc(f): // and NaN
		return nil, fmt.Errorf("= %s: not a whole number, want an integer", shown)
	}
	n, _ := new(big.Float).SetFloat64(f).Int(nil)
	return n, nil
}
