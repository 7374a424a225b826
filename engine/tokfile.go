package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/klring/klring/tokenizer"
)

// TokenizerFile names the tokenizer of a checkpoint, beside its
// model.safetensors: Hugging Face's tokenizer_config.json, with klring's
// own key for the tokenizer's name.
const TokenizerFile = "tokenizer_config.json"

type tokenizerConfig struct {
	Class   string `json:"tokenizer_class"`
	Klring  string `json:"klring_tokenizer"`
	MaxLen  int    `json:"model_max_length"`
	AddBOS  bool   `json:"add_bos_token"`
	AddPref bool   `json:"add_prefix_space"`
}

// WriteTokenizerConfig writes the tokenizer file of a checkpoint in dir.
func WriteTokenizerConfig(dir, name string, ctx int) error {
	class := "klring-bytes"
	if name == tokenizer.NameGPT2 {
		class = "GPT2Tokenizer"
	}
	b, err := json.MarshalIndent(tokenizerConfig{Class: class, Klring: name, MaxLen: ctx}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, TokenizerFile), append(b, '\n'), 0o644)
}

// ReadTokenizer returns the name of a checkpoint's tokenizer, "" when it
// has no tokenizer file.
func ReadTokenizer(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, TokenizerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var c tokenizerConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("%s: %w", TokenizerFile, err)
	}
	switch {
	case c.Klring != "":
		return c.Klring, nil
	case c.Class == "GPT2Tokenizer" || c.Class == "GPT2TokenizerFast":
		return tokenizer.NameGPT2, nil
	}
	return "", nil
}
