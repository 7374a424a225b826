package shard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// ErrAmbiguous: a headerless token file that would read as llm.c's format.
var ErrAmbiguous = errors.New("shard: headerless token file starts like an llm.c header")

// TokenFormat is the layout of a token file; both are what the tokens:PATH
// source reads.
type TokenFormat string

const (
	// NanoGPT is nanoGPT's train.bin: the ids as little-endian uint16, no
	// header.
	NanoGPT TokenFormat = "nanogpt"
	// LLMC is llm.c's .bin: a header of 256 little-endian int32 (the magic
	// 20240520, the version 1 for uint16 ids, the number of ids, then zeros)
	// and the ids as little-endian uint16.
	LLMC TokenFormat = "llmc"
)

// ParseTokenFormat returns the format called s: "nanogpt" or "llmc".
func ParseTokenFormat(s string) (TokenFormat, error) {
	switch f := TokenFormat(s); f {
	case NanoGPT, LLMC:
		return f, nil
	}
	return "", fmt.Errorf("token file format %q, want nanogpt or llmc: %w", s, ErrOptions)
}

// checkTokens reports the first reason ids cannot be a token file of format
// f: no ids (ErrEmpty), an id outside uint16 (ErrTokenRange, naming it and
// its position), too many ids for llm.c's int32 count, or a headerless file
// whose first two ids spell llm.c's magic (ErrAmbiguous).
func checkTokens(f TokenFormat, ids []int32) error {
	if _, err := ParseTokenFormat(string(f)); err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("no tokens to write: %w", ErrEmpty)
	}
	for i, id := range ids {
		if id < 0 || id > math.MaxUint16 {
			return fmt.Errorf("token %d at position %d does not fit uint16 (0..%d): %w", id, i, math.MaxUint16, ErrTokenRange)
		}
	}
	switch {
	case f == LLMC && len(ids) > math.MaxInt32:
		return fmt.Errorf("%d tokens, llm.c's header counts at most %d: %w", len(ids), math.MaxInt32, ErrOptions)
	case f == NanoGPT && len(ids) >= 2 && uint32(ids[0])|uint32(ids[1])<<16 == llmcMagic:
		return fmt.Errorf("tokens %d, %d at the start read as llm.c's magic %d; write the llmc format: %w", ids[0], ids[1], llmcMagic, ErrAmbiguous)
	}
	return nil
}

// WriteTokens writes ids to w as a token file of format f. It checks every
// id before it writes anything: ids must be non-empty and in 0..65535, and a
// headerless file must not start with the two ids whose bytes are llm.c's
// magic (55432, 308), which would read as a header.
func WriteTokens(w io.Writer, f TokenFormat, ids []int32) error {
	if err := checkTokens(f, ids); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if f == LLMC {
		h := make([]byte, llmcHeaderBytes)
		binary.LittleEndian.PutUint32(h[0:], llmcMagic)
		binary.LittleEndian.PutUint32(h[4:], llmcVersion)
		binary.LittleEndian.PutUint32(h[8:], uint32(len(ids)))
		if _, err := bw.Write(h); err != nil {
			return fmt.Errorf("writing the llm.c header: %w", err)
		}
	}
	var b [2]byte
	for _, id := range ids {
		binary.LittleEndian.PutUint16(b[:], uint16(id))
		if _, err := bw.Write(b[:]); err != nil {
			return fmt.Errorf("writing tokens: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing tokens: %w", err)
	}
	return nil
}

// WriteTokenFile writes ids to path as a token file of format f (see
// WriteTokens), atomically: into a temporary file beside path, synced, then
// renamed over path, and the folder synced. On any error path is untouched
// and no temporary file is left.
func WriteTokenFile(path string, f TokenFormat, ids []int32) error {
	if err := checkTokens(f, ids); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	err := writeFileAtomic(path, func(w io.Writer) error { return WriteTokens(w, f, ids) })
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// writeFileAtomic creates path with what write writes, atomically: into a
// temporary file in path's folder, synced and closed, renamed over path,
// and the folder synced. On any error path is untouched and the temporary
// file is removed. The file's mode is 0644.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = write(tmp); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing folder %s: %w", dir, err)
	}
	return nil
}

// ParseTokens returns the ids of a token file's bytes, in either format,
// told apart and checked as Open checks a tokens:PATH file (ErrEmpty,
// ErrOddSize, ErrHeader).
func ParseTokens(b []byte) ([]int32, error) {
	if len(b) == 0 {
		return nil, ErrEmpty
	}
	payload, err := tokenPayload(b)
	if err != nil {
		return nil, err
	}
	if len(payload) == 0 {
		return nil, ErrEmpty
	}
	ids := make([]int32, len(payload)/2)
	for i := range ids {
		ids[i] = int32(binary.LittleEndian.Uint16(payload[2*i:]))
	}
	return ids, nil
}

// ReadTokenFile reads the token file at path onto the heap (4 bytes per
// id; Open maps a file instead) and returns its ids (see ParseTokens).
func ReadTokenFile(path string) ([]int32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	ids, err := ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ids, nil
}
