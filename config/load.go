package config

import (
	"fmt"
	"sort"
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
	v := viper.New()
	for _, k := range Keys() {
		v.SetDefault(k.Name, k.Default)
	}
	v.SetEnvPrefix("KLRING")
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
	hook := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.TextUnmarshallerHookFunc(), mapstructure.StringToTimeDurationHookFunc()))
	if err := v.UnmarshalExact(&c, hook); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func isKey(name string) bool {
	for _, k := range Keys() {
		if k.Name == name {
			return true
		}
	}
	return false
}

// checkFileKeys rejects keys in the file that klring does not know, with their
// names (UnmarshalExact alone reports them less clearly).
func checkFileKeys(v *viper.Viper) error {
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k.Name] = true
		for p := k.Name; strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			known[p] = true
		}
	}
	var unknown []string
	for _, k := range v.AllKeys() {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("%w: unknown key(s) %s", ErrUnknownKey, strings.Join(unknown, ", "))
	}
	return nil
}
