package teacherstore

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"github.com/klring/klring/internal/mmap"
	"hash/crc32"
	"math"
	"os"
	"strings"
)

// Store is an open, complete store, mapped read-only. Its methods may be
// called from many goroutines at once; Close releases the mapping and no
// method may be called after it.
type Store struct {
	h     Header
	path  string
	data  []byte // the whole file
	unmap func() error
}

// Open maps the complete store at path and checks its header (magic,
// version, checksum, every field) and that the file's length is the one the
// header implies. A damaged file is refused with an error wrapping ErrFormat
// that names what is wrong, a store whose writing stopped early with
// ErrIncomplete.
func Open(path string) (*Store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening teacher store: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening teacher store: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("opening teacher store %s: not a regular file", path)
	}
	hb := make([]byte, HeaderSize)
	if n, _ := f.ReadAt(hb, 0); n < HeaderSize {
		return nil, fmt.Errorf("teacher store %s: %w: %d bytes, shorter than its %d-byte header", path, ErrFormat, st.Size(), HeaderSize)
	}
	h, done, err := decodeHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("teacher store %s: %w", path, err)
	}
	if done != h.Windows {
		todo := "run teacher-dump again to finish it"
		if !strings.HasSuffix(path, partialSuffix) {
			todo = "not a " + partialSuffix + " file that teacher-dump continues: remove it and run teacher-dump again"
		}
		return nil, fmt.Errorf("teacher store %s: %w: %d of %d windows written (%s)", path, ErrIncomplete, done, h.Windows, todo)
	}
	if want := h.FileBytes(); st.Size() != want {
		return nil, fmt.Errorf("teacher store %s: %w: file length %d, the header (%d windows of %d bytes) implies %d", path, ErrFormat, st.Size(), h.Windows, h.RecordBytes(), want)
	}
	data, unmap, err := mmap.File(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("teacher store %s: %w", path, err)
	}
	return &Store{h: h, path: path, data: data, unmap: unmap}, nil
}

// Close unmaps the store. It is safe to call more than once.
func (s *Store) Close() error {
	if s.unmap == nil {
		return nil
	}
	err := s.unmap()
	s.unmap, s.data = nil, nil
	return err
}

// Header is the store's header.
func (s *Store) Header() Header { return s.h }

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// K is the entries kept per position.
func (s *Store) K() int { return s.h.K }

// Ctx is T, the positions of a window.
func (s *Store) Ctx() int { return s.h.Ctx }

// Check compares the store's header with want and returns an error wrapping
// ErrMismatch that names every field that differs (teacher SHA-256, data
// fingerprint, vocabulary, context, k, dtype, temperature, windows); fields
// of want left zero are not compared (Header.Diff). The data fingerprint is
// compared as DataKey: seed and held-out fraction do not matter.
func (s *Store) Check(want Header) error {
	if d := s.h.Diff(want); d != "" {
		return fmt.Errorf("teacher store %s: %w: %s", s.path, ErrMismatch, d)
	}
	return nil
}

// record is window w's bytes.
func (s *Store) record(w int) []byte {
	n := s.h.RecordBytes()
	off := s.h.dataOffset() + int64(w)*n
	return s.data[off : off+n : off+n]
}

// checksum verifies window w's record against the table.
func (s *Store) checksum(w int) error {
	want := binary.LittleEndian.Uint32(s.data[HeaderSize+4*w:])
	if got := crc32.Checksum(s.record(w), castagnoli); got != want {
		return fmt.Errorf("teacher store %s: %w: window %d's checksum is %08x, its bytes sum to %08x (damaged)", s.path, ErrFormat, w, want, got)
	}
	return nil
}

// Rows writes the T = Ctx() rows of window w: ids [T*K] (row-major: the K
// ids of position 0, then of 1, ...), in decreasing order of probability,
// probs [T*K] as float32, and, when rest is not nil, rest [T], the
// teacher's mass outside each row's K ids. Float16 rows are scaled so that
// each sums to 1 - rest (the mass the teacher's top K held), which float16
// rounding alone would miss by up to 5e-4. It verifies the window's
// checksum first: a damaged window is an error wrapping ErrFormat, as is an
// id outside the vocabulary. A window out of range or a slice of the wrong
// length panics.
func (s *Store) Rows(w int, ids []int32, probs []float32, rest []float32) error {
	T, K := s.h.Ctx, s.h.K
	if len(ids) != T*K || len(probs) != T*K || rest != nil && len(rest) != T {
		panic(fmt.Sprintf("teacherstore: Rows len(ids) = %d, len(probs) = %d, len(rest) = %d, want %d, %d, %d or nil", len(ids), len(probs), len(rest), T*K, T*K, T))
	}
	return s.rows(w, K, ids, probs, rest)
}

// rows is Rows keeping the first k <= K entries of every row (its top k,
// the rows being sorted): ids and probs [T*k].
func (s *Store) rows(w, k int, ids []int32, probs []float32, rest []float32) error {
	h := s.h
	T, K := h.Ctx, h.K
	if w < 0 || w >= h.Windows {
		panic(fmt.Sprintf("teacherstore: window %d of a store of %d windows", w, h.Windows))
	}
	if err := s.checksum(w); err != nil {
		return err
	}
	rec := s.record(w)
	le := binary.LittleEndian
	n := T * K
	ib, vb := h.idBytes(), h.Dtype.Size()
	idb, pb, rb := rec[:n*ib], rec[n*ib:n*(ib+vb)], rec[n*(ib+vb):]
	V := uint32(h.Vocab)
	for t := range T {
		for i := range k {
			j := t*K + i
			var id uint32
			if ib == 2 {
				id = uint32(le.Uint16(idb[2*j:]))
			} else {
				id = le.Uint32(idb[4*j:])
			}
			if id >= V {
				return fmt.Errorf("teacher store %s: %w: window %d position %d holds id %d, vocab %d", s.path, ErrFormat, w, t, id, V)
			}
			ids[t*k+i] = int32(id)
		}
		r := math.Float32frombits(le.Uint32(rb[4*t:]))
		if rest != nil {
			rest[t] = r
		}
		row := probs[t*k : (t+1)*k]
		if h.Dtype == Float32 {
			for i := range row {
				row[i] = math.Float32frombits(le.Uint32(pb[4*(t*K+i):]))
			}
			continue
		}
		// float16: scale by the row's K values so that they sum to 1 -
		// rest; the top k are the first k of them.
		var sum float64
		for i := range K {
			sum += float64(halfToFloat32(le.Uint16(pb[2*(t*K+i):])))
		}
		f := 1.0
		if sum > 0 {
			f = (1 - float64(r)) / sum
		}
		for i := range row {
			row[i] = float32(float64(halfToFloat32(le.Uint16(pb[2*(t*K+i):]))) * f)
		}
	}
	return nil
}

// Targets fills the sparse targets of windows for loss.Target{SparseIDs:
// ids, SparseProbs: probs, K: k}: ids and probs [len(windows)*T*k], the
// rows of windows[0] first, as engine lays out a batch of windows (row b*T
// + t is position t of windows[b]). k is 1..K() (0 means K()): the rows
// being sorted, their first k entries are the teacher's top k, so one store
// serves every loss.teacher_top_k up to its own. T must be Ctx() (the
// student's context is the store's); another T or k, or slices of the
// wrong length, panic. A damaged window is an error (Rows).
func (s *Store) Targets(ids []int32, probs []float32, windows []int32, T, k int) error {
	if k == 0 {
		k = s.h.K
	}
	if T != s.h.Ctx || k < 1 || k > s.h.K {
		panic(fmt.Sprintf("teacherstore: Targets for windows of %d positions and top %d, the store has %d positions and top %d", T, k, s.h.Ctx, s.h.K))
	}
	n := T * k
	if len(ids) != len(windows)*n || len(probs) != len(windows)*n {
		panic(fmt.Sprintf("teacherstore: Targets len(ids) = %d, len(probs) = %d, want len(windows)*T*k = %d", len(ids), len(probs), len(windows)*n))
	}
	for b, w := range windows {
		if err := s.rows(int(w), k, ids[b*n:(b+1)*n:(b+1)*n], probs[b*n:(b+1)*n:(b+1)*n], nil); err != nil {
			return err
		}
	}
	return nil
}

// Digest is the hex SHA-256 of the table of window checksums: two stores
// with the same digest hold the same records. It reads 4 bytes per window.
func (s *Store) Digest() string {
	sum := sha256.Sum256(s.data[HeaderSize : HeaderSize+4*s.h.Windows])
	return hex.EncodeToString(sum[:])
}

// Verify checks the checksum of every window, and returns the mean mass
// the stored top K keep (1 - rest, over every position).
func (s *Store) Verify() (meanKept float64, err error) {
	T := s.h.Ctx
	var kept float64
	for w := range s.h.Windows {
		if err := s.checksum(w); err != nil {
			return 0, err
		}
		rec := s.record(w)
		rb := rec[len(rec)-4*T:]
		for t := range T {
			kept += 1 - float64(math.Float32frombits(binary.LittleEndian.Uint32(rb[4*t:])))
		}
	}
	return kept / float64(s.h.Windows*T), nil
}
