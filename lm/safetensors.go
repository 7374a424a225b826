package lm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The safetensors format: an 8-byte little-endian header length n, n bytes of
// JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}}, then the data; offsets are relative to the
// first byte after the header. Every offset is checked before it is used.

// maxHeader bounds the JSON header a loader accepts.
const maxHeader = 100 << 20

var dtypeSize = map[string]int{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
	"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}

// stEntry is one tensor of a parsed file; data is its bytes inside the file.
type stEntry struct {
	name  string
	dtype string
	shape []int
	data  []byte
}

// stFile is a parsed safetensors file.
type stFile struct {
	tensors  map[string]stEntry
	metadata map[string]string
}

// parseSafetensors checks the header and every offset of b and returns views
// of the tensors' bytes. It never panics on any input.
func parseSafetensors(b []byte) (*stFile, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("file of %d bytes is shorter than the 8-byte header length: %w", len(b), ErrSafetensors)
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		return nil, fmt.Errorf("header length %d larger than the %d bytes after it: %w", n, len(b)-8, ErrSafetensors)
	}
	if n > maxHeader {
		return nil, fmt.Errorf("header length %d over the %d limit: %w", n, maxHeader, ErrSafetensors)
	}
	header, data := b[8:8+n], b[8+n:]
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fmt.Errorf("header: %w: %w", ErrSafetensors, err)
	}
	f := &stFile{tensors: make(map[string]stEntry, len(raw))}
	type span struct {
		name       string
		begin, end uint64
	}
	var spans []span
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.metadata); err != nil {
				return nil, fmt.Errorf("__metadata__: %w: %w", ErrSafetensors, err)
			}
			continue
		}
		var h struct {
			Dtype       string   `json:"dtype"`
			Shape       []int64  `json:"shape"`
			DataOffsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &h); err != nil {
			return nil, fmt.Errorf("tensor %q: %w: %w", name, ErrSafetensors, err)
		}
		size, ok := dtypeSize[h.Dtype]
		if !ok {
			return nil, fmt.Errorf("tensor %q: unknown dtype %q: %w", name, h.Dtype, ErrSafetensors)
		}
		if h.Shape == nil {
			return nil, fmt.Errorf("tensor %q: no shape: %w", name, ErrSafetensors)
		}
		numel := uint64(1)
		shape := make([]int, len(h.Shape))
		for i, d := range h.Shape {
			if d < 0 || d > math.MaxInt32 {
				return nil, fmt.Errorf("tensor %q: dimension %d of shape %v: %w", name, d, h.Shape, ErrSafetensors)
			}
			shape[i] = int(d)
			numel *= uint64(d)
			if numel > uint64(len(data)) {
				// Cannot fit (a non-empty tensor needs at least one byte per element).
				return nil, fmt.Errorf("tensor %q: shape %v needs more than the %d data bytes: %w", name, h.Shape, len(data), ErrSafetensors)
			}
		}
		if len(h.DataOffsets) != 2 {
			return nil, fmt.Errorf("tensor %q: data_offsets %v, want [begin, end]: %w", name, h.DataOffsets, ErrSafetensors)
		}
		begin, end := h.DataOffsets[0], h.DataOffsets[1]
		if begin > end || end > uint64(len(data)) {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] outside the %d data bytes: %w", name, begin, end, len(data), ErrSafetensors)
		}
		if want := numel * uint64(size); end-begin != want {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] hold %d bytes, shape %v of %s needs %d: %w", name, begin, end, end-begin, h.Shape, h.Dtype, want, ErrSafetensors)
		}
		f.tensors[name] = stEntry{name: name, dtype: h.Dtype, shape: shape, data: data[begin:end:end]}
		if end > begin {
			spans = append(spans, span{name, begin, end})
		}
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.begin != b.begin {
			if a.begin < b.begin {
				return -1
			}
			return 1
		}
		return bytes.Compare([]byte(a.name), []byte(b.name))
	})
	for i := 1; i < len(spans); i++ {
		if spans[i].begin < spans[i-1].end {
			return nil, fmt.Errorf("tensors %q [%d, %d] and %q [%d, %d] overlap: %w",
				spans[i-1].name, spans[i-1].begin, spans[i-1].end, spans[i].name, spans[i].begin, spans[i].end, ErrSafetensors)
		}
	}
	return f, nil
}

// stOut is one tensor to write.
type stOut struct {
	name  string
	shape []int
	data  []float32 // row-major in shape
}

// encodeSafetensors returns the bytes of a safetensors file holding ts in
// order (F32), with metadata. The header is padded with spaces to 8 bytes.
func encodeSafetensors(ts []stOut, metadata map[string]string) []byte {
	var h bytes.Buffer
	h.WriteByte('{')
	if len(metadata) > 0 {
		mb, err := json.Marshal(metadata)
		if err != nil {
			panic("lm: metadata: " + err.Error())
		}
		h.WriteString(`"__metadata__":`)
		h.Write(mb)
	}
	off := 0
	for i, t := range ts {
		if i > 0 || len(metadata) > 0 {
			h.WriteByte(',')
		}
		name, _ := json.Marshal(t.name)
		h.Write(name)
		h.WriteString(`:{"dtype":"F32","shape":[`)
		for j, d := range t.shape {
			if j > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		end := off + 4*len(t.data)
		fmt.Fprintf(&h, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	out := make([]byte, 8+h.Len()+off)
	binary.LittleEndian.PutUint64(out, uint64(h.Len()))
	copy(out[8:], h.Bytes())
	p := out[8+h.Len():]
	for _, t := range ts {
		for _, v := range t.data {
			binary.LittleEndian.PutUint32(p, math.Float32bits(v))
			p = p[4:]
		}
	}
	return out
}

// layoutTensors lists buf (laid out by layout) as file tensors: Hugging Face
// keys with prefix, Conv1D matrices transposed to [in, out], padded rows
// (Tensor.PadRows) left out.
func layoutTensors(layout []Tensor, buf []float32, prefix string) []stOut {
	out := make([]stOut, len(layout))
	for i, t := range layout {
		v := t.View(buf)
		data := v[:t.FileSize()] // padded rows are not written
		if t.Conv1D {
			data = transpose(v, t.Shape[0], t.Shape[1])
		}
		out[i] = stOut{name: prefix + t.Name, shape: t.FileShape(), data: data}
	}
	return out
}

// transpose returns the [cols, rows] transpose of the row-major [rows, cols] m.
func transpose(m []float32, rows, cols int) []float32 {
	t := make([]float32, rows*cols)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			t[c*rows+r] = m[r*cols+c]
		}
	}
	return t
}

// readLayout fills dst (laid out by layout) from f: every tensor must be
// present under prefix+name (or "transformer."+prefix+name, as Hugging Face's
// GPT2LMHeadModel writes), F32, of the file shape; Conv1D matrices are
// transposed back to [out, in]; padded rows (Tensor.PadRows), which the file
// does not hold, are set to zero. Keys not in the layout are ignored. dst is
// written only when every tensor checks out.
func readLayout(f *stFile, layout []Tensor, dst []float32, prefix string) error {
	entries := make([]stEntry, len(layout))
	for i, t := range layout {
		e, ok := f.tensors[prefix+t.Name]
		if !ok {
			e, ok = f.tensors["transformer."+prefix+t.Name]
		}
		if !ok {
			return fmt.Errorf("tensor %q: %w", prefix+t.Name, ErrMissingTensor)
		}
		if e.dtype != "F32" {
			return fmt.Errorf("tensor %q is %s, want F32: %w", e.name, e.dtype, ErrDtype)
		}
		if want := t.FileShape(); !slices.Equal(e.shape, want) {
			return fmt.Errorf("tensor %q has shape %v, want %v: %w", e.name, e.shape, want, ErrShape)
		}
		entries[i] = e
	}
	if err := extraLayers(f, layout, prefix); err != nil {
		return err
	}
	for i, t := range layout {
		v := t.View(dst)
		data := entries[i].data
		if t.Conv1D {
			rows, cols := t.Shape[0], t.Shape[1] // memory [out, in]; file [in, out]
			for c := 0; c < cols; c++ {
				for r := 0; r < rows; r++ {
					v[r*cols+c] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*(c*rows+r):]))
				}
			}
			continue
		}
		n := t.FileSize()
		for j := range v[:n] {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*j:]))
		}
		clear(v[n:]) // padded rows
	}
	return nil
}

// extraLayers rejects a file that holds layers the layout does not (h.N
// with N at or past its layer count): config.json and the weights disagree
// on n_layer, and reading the first layers only would quietly drop the rest.
func extraLayers(f *stFile, layout []Tensor, prefix string) error {
	layers := 0
	for _, t := range layout {
		if l, ok := layerOf(t.Name); ok {
			layers = max(layers, l+1)
		}
	}
	if layers == 0 {
		return nil
	}
	var extra []string
	for name := range f.tensors {
		n, ok := strings.CutPrefix(strings.TrimPrefix(name, "transformer."), prefix)
		if l, isLayer := layerOf(n); ok && isLayer && l >= layers {
			extra = append(extra, name)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	slices.Sort(extra)
	return fmt.Errorf("tensor %q is of a layer past the config's %d (n_layer): %w", extra[0], layers, ErrShape)
}

// layerOf returns N of a tensor named h.N.*.
func layerOf(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "h.")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, ".")
	l, err := strconv.Atoi(num)
	if !ok || err != nil || l < 0 {
		return 0, false
	}
	return l, true
}

// Tensor32 is one float32 tensor of a safetensors file of another package
// (EncodeSafetensors, DecodeSafetensors32).
type Tensor32 struct {
	Name  string
	Shape []int
	Data  []float32 // row-major in Shape
}

// EncodeSafetensors returns the bytes of a safetensors file holding ts in
// order (F32), with metadata: the same encoding as a checkpoint's files.
func EncodeSafetensors(ts []Tensor32, metadata map[string]string) []byte {
	out := make([]stOut, len(ts))
	for i, t := range ts {
		out[i] = stOut{name: t.Name, shape: t.Shape, data: t.Data}
	}
	return encodeSafetensors(out, metadata)
}

// DecodeSafetensors32 parses b with every check LoadCheckpoint makes of its
// files (header, offsets, sizes, no overlaps) and returns its tensors by
// name, each copied out as float32s, and its metadata. A tensor of another
// dtype is an error.
func DecodeSafetensors32(b []byte) (map[string]Tensor32, map[string]string, error) {
	f, err := parseSafetensors(b)
	if err != nil {
		return nil, nil, err
	}
	ts := make(map[string]Tensor32, len(f.tensors))
	for name, e := range f.tensors {
		if e.dtype != "F32" {
			return nil, nil, fmt.Errorf("tensor %q is %s, not F32: %w", name, e.dtype, ErrSafetensors)
		}
		v := make([]float32, len(e.data)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(e.data[4*i:]))
		}
		ts[name] = Tensor32{Name: name, Shape: e.shape, Data: v}
	}
	return ts, f.metadata, nil
}
