package teacherstore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strings"

	"github.com/klring/klring/shard"
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrFormat: the file is not a store of this format, or is damaged (a
	// bad magic, version, checksum, field or length).
	ErrFormat = errors.New("teacherstore: not a valid store")
	// ErrMismatch: a store made for another teacher, data, vocabulary,
	// context, k or temperature than the one asked for.
	ErrMismatch = errors.New("teacherstore: store does not match")
	// ErrExists: the output of a new store already exists.
	ErrExists = errors.New("teacherstore: store exists")
	// ErrIncomplete: a store whose writing stopped before its last window.
	ErrIncomplete = errors.New("teacherstore: store is incomplete")
)

// Magic, version and sizes of the format (doc.go).
const (
	Magic      = "KLRTOPK\n"
	Version    = 1
	HeaderSize = 4096
	pageAlign  = 4096
	maxBytes   = 1 << 50 // largest store the decoder accepts
)

// Dtype is the type of the stored probabilities.
type Dtype uint32

// Dtypes.
const (
	Float32 Dtype = 1
	Float16 Dtype = 2
)

// ParseDtype parses float32 or float16.
func ParseDtype(s string) (Dtype, error) {
	switch s {
	case "float32":
		return Float32, nil
	case "float16":
		return Float16, nil
	}
	return 0, fmt.Errorf("dtype %q, want float32 or float16", s)
}

func (d Dtype) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	}
	return fmt.Sprintf("dtype(%d)", uint32(d))
}

// Size is the bytes of one value.
func (d Dtype) Size() int {
	if d == Float16 {
		return 2
	}
	return 4
}

// Header describes a store: what it was made from and how it is laid out.
// It travels in a job's welcome (msgpack), so that every worker checks that
// its store is the coordinator's.
type Header struct {
	// TeacherSHA256 is the hex SHA-256 of the teacher's model.safetensors.
	TeacherSHA256 string `json:"teacher_sha256" msgpack:"teacher_sha256"`
	// Data is the fingerprint of the data source with Seed and ValFraction
	// zero (DataKey): the windows are the same for every seed and held-out
	// fraction.
	Data shard.Fingerprint `json:"data" msgpack:"data"`
	// Vocab is the teacher's vocabulary: every stored id is below it.
	Vocab int `json:"vocab" msgpack:"vocab"`
	// Ctx is T, the positions of a window (the data's ctx).
	Ctx int `json:"ctx" msgpack:"ctx"`
	// K is the entries kept per position, 1..Vocab.
	K int `json:"k" msgpack:"k"`
	// Dtype is the type of the stored probabilities.
	Dtype Dtype `json:"dtype" msgpack:"dtype"`
	// Temperature is the teacher's softmax temperature of the probabilities.
	Temperature float64 `json:"temperature" msgpack:"temperature"`
	// Windows is the number of windows of the data at stride Ctx: (tokens -
	// 1) / Ctx.
	Windows int `json:"windows" msgpack:"windows"`
}

// DataKey is the data fingerprint a store keys on: fp with Seed and
// ValFraction zero.
func DataKey(fp shard.Fingerprint) shard.Fingerprint {
	fp.Seed, fp.ValFraction = 0, 0
	return fp
}

// idBytes is the size of a stored id: 2 when the vocabulary fits uint16.
func (h Header) idBytes() int {
	if h.Vocab <= 1<<16 {
		return 2
	}
	return 4
}

// RecordBytes is the size of one window's record: T*K ids, T*K
// probabilities and T rest masses (float32).
func (h Header) RecordBytes() int64 {
	return int64(h.Ctx) * (int64(h.K)*int64(h.idBytes()+h.Dtype.Size()) + 4)
}

// tableOffset is where the window checksums start; dataOffset where the
// records start.
func (h Header) dataOffset() int64 {
	n := int64(HeaderSize) + 4*int64(h.Windows)
	return (n + pageAlign - 1) / pageAlign * pageAlign
}

// FileBytes is the length of the complete store.
func (h Header) FileBytes() int64 { return h.dataOffset() + int64(h.Windows)*h.RecordBytes() }

// Validate checks every field, naming the first bad one.
func (h Header) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: header field %s = %v, want %s", ErrFormat, field, v, want)
	}
	kinds := map[string]bool{"synthetic": true, "text": true, "tokens": true}
	switch {
	case len(h.TeacherSHA256) != 64 || !isHex(h.TeacherSHA256):
		return bad("teacher_sha256", fmt.Sprintf("%q", h.TeacherSHA256), "64 hex digits")
	case !kinds[h.Data.Kind]:
		return bad("data.kind", fmt.Sprintf("%q", h.Data.Kind), "synthetic, text or tokens")
	case len(h.Data.SHA256) != 64 || !isHex(h.Data.SHA256):
		return bad("data.sha256", fmt.Sprintf("%q", h.Data.SHA256), "64 hex digits")
	case h.Data.Bytes < 1 || h.Data.Bytes > maxBytes:
		return bad("data.bytes", h.Data.Bytes, fmt.Sprintf("1..%d", int64(maxBytes)))
	case h.Data.Tokens < 2 || int64(h.Data.Tokens) > h.Data.Bytes:
		return bad("data.tokens", h.Data.Tokens, "2..data.bytes")
	case h.Data.Seed != 0 || h.Data.ValFraction != 0:
		return bad("data.seed/val_fraction", fmt.Sprintf("%d/%v", h.Data.Seed, h.Data.ValFraction), "0 (a store serves every seed and held-out fraction)")
	case h.Vocab < 1 || h.Vocab > 1<<24:
		return bad("vocab", h.Vocab, fmt.Sprintf("1..%d", 1<<24))
	case h.Data.Vocab < 1 || h.Data.Vocab > h.Vocab:
		return bad("data.vocab", h.Data.Vocab, fmt.Sprintf("1..vocab (%d)", h.Vocab))
	case h.Ctx < 1 || h.Ctx > shard.MaxCtx:
		return bad("ctx", h.Ctx, fmt.Sprintf("1..%d", shard.MaxCtx))
	case h.Data.Ctx != h.Ctx:
		return bad("data.ctx", h.Data.Ctx, fmt.Sprintf("ctx (%d)", h.Ctx))
	case h.K < 1 || h.K > h.Vocab:
		return bad("k", h.K, fmt.Sprintf("1..vocab (%d)", h.Vocab))
	case h.Dtype != Float32 && h.Dtype != Float16:
		return bad("dtype", uint32(h.Dtype), "1 (float32) or 2 (float16)")
	case !(h.Temperature > 0) || math.IsInf(h.Temperature, 0):
		return bad("temperature", h.Temperature, "a finite number > 0")
	case h.Windows != (h.Data.Tokens-1)/h.Ctx || h.Windows < 1:
		return bad("windows", h.Windows, fmt.Sprintf("(data.tokens-1)/ctx = %d, at least 1", (h.Data.Tokens-1)/max(h.Ctx, 1)))
	case float64(h.Windows)*float64(h.RecordBytes()) > maxBytes:
		return bad("windows", h.Windows, fmt.Sprintf("a store of at most %d bytes", int64(maxBytes)))
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// Byte offsets of the header's fields (doc.go).
const (
	offMagic     = 0
	offVersion   = 8
	offSize      = 12
	offCRC       = 16
	offIDBytes   = 20
	offDtype     = 24
	offVocab     = 28
	offCtx       = 32
	offK         = 36
	offTemp      = 40
	offWindows   = 48
	offDone      = 56
	offTeacher   = 64
	offDataSHA   = 96
	offDataKind  = 128
	offDataBytes = 144
	offDataTok   = 152
	offDataVocab = 160
	offDataCtx   = 164
	offEnd       = 168 // the rest of the header is zero
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encode writes h with done windows written into a header block.
func (h Header) encode(done int) []byte {
	b := make([]byte, HeaderSize)
	le := binary.LittleEndian
	copy(b[offMagic:], Magic)
	le.PutUint32(b[offVersion:], Version)
	le.PutUint32(b[offSize:], HeaderSize)
	le.PutUint32(b[offIDBytes:], uint32(h.idBytes()))
	le.PutUint32(b[offDtype:], uint32(h.Dtype))
	le.PutUint32(b[offVocab:], uint32(h.Vocab))
	le.PutUint32(b[offCtx:], uint32(h.Ctx))
	le.PutUint32(b[offK:], uint32(h.K))
	le.PutUint64(b[offTemp:], math.Float64bits(h.Temperature))
	le.PutUint64(b[offWindows:], uint64(h.Windows))
	le.PutUint64(b[offDone:], uint64(done))
	hex.Decode(b[offTeacher:offTeacher+32], []byte(h.TeacherSHA256))
	hex.Decode(b[offDataSHA:offDataSHA+32], []byte(h.Data.SHA256))
	copy(b[offDataKind:offDataKind+16], h.Data.Kind)
	le.PutUint64(b[offDataBytes:], uint64(h.Data.Bytes))
	le.PutUint64(b[offDataTok:], uint64(h.Data.Tokens))
	le.PutUint32(b[offDataVocab:], uint32(h.Data.Vocab))
	le.PutUint32(b[offDataCtx:], uint32(h.Data.Ctx))
	le.PutUint32(b[offCRC:], crc32.Checksum(b, castagnoli))
	return b
}

// decodeHeader reads a header block: the header and the number of windows
// written. Every error wraps ErrFormat and names what is wrong.
func decodeHeader(b []byte) (Header, int, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, 0, fmt.Errorf("%w: %d bytes, a header has %d", ErrFormat, len(b), HeaderSize)
	}
	b = b[:HeaderSize]
	le := binary.LittleEndian
	if string(b[offMagic:offMagic+8]) != Magic {
		return h, 0, fmt.Errorf("%w: magic %q, want %q (not a teacher top-k store)", ErrFormat, b[:8], Magic)
	}
	if v := le.Uint32(b[offVersion:]); v != Version {
		return h, 0, fmt.Errorf("%w: format version %d, this program reads version %d", ErrFormat, v, Version)
	}
	if s := le.Uint32(b[offSize:]); s != HeaderSize {
		return h, 0, fmt.Errorf("%w: header size %d, want %d", ErrFormat, s, HeaderSize)
	}
	want := le.Uint32(b[offCRC:])
	c := crc32.Update(0, castagnoli, b[:offCRC])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	c = crc32.Update(c, castagnoli, b[offCRC+4:])
	if c != want {
		return h, 0, fmt.Errorf("%w: header checksum %08x, the header's bytes sum to %08x (damaged)", ErrFormat, want, c)
	}
	if i := bytes.IndexFunc(b[offEnd:], func(r rune) bool { return r != 0 }); i >= 0 {
		return h, 0, fmt.Errorf("%w: reserved header byte %d is not zero", ErrFormat, offEnd+i)
	}
	kind := b[offDataKind : offDataKind+16]
	if i := bytes.IndexByte(kind, 0); i >= 0 {
		if bytes.IndexFunc(kind[i:], func(r rune) bool { return r != 0 }) >= 0 {
			return h, 0, fmt.Errorf("%w: header field data.kind %q is not NUL-padded", ErrFormat, kind)
		}
		kind = kind[:i]
	}
	u64 := func(off int) (int, error) {
		v := le.Uint64(b[off:])
		if v > maxBytes {
			return 0, fmt.Errorf("%w: header field at byte %d = %d, too large", ErrFormat, off, v)
		}
		return int(v), nil
	}
	h.TeacherSHA256 = hex.EncodeToString(b[offTeacher : offTeacher+32])
	h.Data.SHA256 = hex.EncodeToString(b[offDataSHA : offDataSHA+32])
	h.Data.Kind = string(kind)
	h.Vocab = int(le.Uint32(b[offVocab:]))
	h.Ctx = int(le.Uint32(b[offCtx:]))
	h.K = int(le.Uint32(b[offK:]))
	h.Dtype = Dtype(le.Uint32(b[offDtype:]))
	h.Temperature = math.Float64frombits(le.Uint64(b[offTemp:]))
	h.Data.Vocab = int(le.Uint32(b[offDataVocab:]))
	h.Data.Ctx = int(le.Uint32(b[offDataCtx:]))
	var err error
	if h.Windows, err = u64(offWindows); err != nil {
		return h, 0, err
	}
	done, err := u64(offDone)
	if err != nil {
		return h, 0, err
	}
	db, err := u64(offDataBytes)
	if err != nil {
		return h, 0, err
	}
	if h.Data.Tokens, err = u64(offDataTok); err != nil {
		return h, 0, err
	}
	h.Data.Bytes = int64(db)
	if err := h.Validate(); err != nil {
		return h, 0, err
	}
	if ib := int(le.Uint32(b[offIDBytes:])); ib != h.idBytes() {
		return h, 0, fmt.Errorf("%w: header field id_bytes = %d, want %d for vocab %d", ErrFormat, ib, h.idBytes(), h.Vocab)
	}
	if done > h.Windows {
		return h, 0, fmt.Errorf("%w: header field windows_done = %d, more than windows = %d", ErrFormat, done, h.Windows)
	}
	return h, done, nil
}

// Diff names every field in which h and want differ, as "name: h's value,
// want's value", joined by "; " ("" when they agree). Fields of want left
// zero are not compared: an empty TeacherSHA256 accepts any teacher, K = 0
// any k, Dtype 0 any dtype, Temperature 0 any temperature, Windows 0 any
// count, and a Data of zero Kind any data.
func (h Header) Diff(want Header) string {
	var d []string
	add := func(name string, a, b any) {
		if a != b {
			d = append(d, fmt.Sprintf("%s: store %v, want %v", name, a, b))
		}
	}
	if want.TeacherSHA256 != "" {
		add("teacher_sha256", h.TeacherSHA256, want.TeacherSHA256)
	}
	if want.Data.Kind != "" {
		if s := h.Data.DiffAs(DataKey(want.Data), "store", "want"); s != "" {
			d = append(d, "data ("+s+")")
		}
	}
	if want.Vocab != 0 {
		add("vocab", h.Vocab, want.Vocab)
	}
	if want.Ctx != 0 {
		add("ctx", h.Ctx, want.Ctx)
	}
	if want.K != 0 {
		add("k", h.K, want.K)
	}
	if want.Dtype != 0 {
		add("dtype", h.Dtype, want.Dtype)
	}
	if want.Temperature != 0 {
		add("temperature", h.Temperature, want.Temperature)
	}
	if want.Windows != 0 {
		add("windows", h.Windows, want.Windows)
	}
	return strings.Join(d, "; ")
}

// crc32Castagnoli is the checksum of b.
func crc32Castagnoli(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
