// Package config loads klring's configuration: one viper instance per load that
// layers, from lowest to highest precedence, the built-in defaults, a YAML file
// (--config FILE), environment variables with the prefix KLRING_ (the key
// train.lr is KLRING_TRAIN_LR) and command-line flags (--train.lr).
//
// Every key has a registered default, so an environment variable alone changes a
// nested value. Decoding is strict: an unknown key in the file, a KLRING_
// variable that names no key (but the deployment's own, nonKeyEnv), a value
// where a section belongs, or a value of the wrong type (a fraction, or a number
// out of the field's range, for an integer key) is an error. Validate checks
// every value and names the key, the value and what is allowed.
//
// config knows the names and types of the user-facing keys and nothing else: it
// does not start anything, connect to anything or read data.
package config
