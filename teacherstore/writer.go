package teacherstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
)

// Writer writes a store window by window, in window order, into PATH.partial
// and renames it to PATH once the last window is in (Finish): PATH is only
// ever a complete store. Sync records on disk how many windows are written;
// a Writer created again for the same PATH and header continues after them.
// A Writer is not safe for concurrent use.
type Writer struct {
	h         Header
	path, tmp string
	f         *os.File
	done      int // windows written
	synced    int // windows recorded in the header on disk
	dropped   int // windows a resumed PATH.partial recorded that are written again
	rec       []byte
	crc       [4]byte
}

// PartialPath is where the store for path is written until it is complete.
func PartialPath(path string) string { return path + partialSuffix }

const partialSuffix = ".partial"

// Create starts the store h at path, or continues PATH.partial when a
// writing of the same header stopped before its end (Done tells where). A
// complete store at path is ErrExists; a partial one with another header is
// ErrMismatch, naming the fields (remove it to start over). Continuing, it
// reads back the windows the partial file's header records and keeps those
// before the first that is cut off (a short file) or fails its checksum:
// that one and the rest are written again (Dropped counts them).
func Create(path string, h Header) (*Writer, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("teacher store %s: %w", path, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("teacher store %s: %w", path, err)
	}
	w := &Writer{h: h, path: path, tmp: PartialPath(path), rec: make([]byte, h.RecordBytes())}
	f, err := os.OpenFile(w.tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	switch {
	case err == nil:
		w.f = f
		if err := f.Truncate(h.FileBytes()); err != nil {
			return nil, w.fail(fmt.Errorf("sizing teacher store %s: %w", w.tmp, err))
		}
		if err := w.writeHeader(); err != nil {
			return nil, w.fail(err)
		}
		return w, nil
	case errors.Is(err, fs.ErrExist):
		return w.resume()
	}
	return nil, fmt.Errorf("creating teacher store: %w", err)
}

// resume opens an existing PATH.partial, checks its header and continues
// after its last intact window.
func (w *Writer) resume() (*Writer, error) {
	f, err := os.OpenFile(w.tmp, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("continuing teacher store: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("continuing teacher store: %w", err)
	}
	hb := make([]byte, HeaderSize)
	if _, err := f.ReadAt(hb, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("continuing teacher store %s: reading its header: %w (remove it to start over)", w.tmp, err)
	}
	h, done, err := decodeHeader(hb)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("continuing teacher store %s: %w (remove it to start over)", w.tmp, err)
	}
	if d := h.Diff(w.h); d != "" {
		f.Close()
		return nil, fmt.Errorf("continuing teacher store %s: %w: %s (remove it to start over)", w.tmp, ErrMismatch, d)
	}
	good, err := w.intact(f, st.Size(), done)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("continuing teacher store %s: %w", w.tmp, err)
	}
	// Only now is the file sized: the windows past its end were not there.
	if err := f.Truncate(w.h.FileBytes()); err != nil {
		f.Close()
		return nil, fmt.Errorf("continuing teacher store %s: %w", w.tmp, err)
	}
	w.f, w.done, w.synced, w.dropped = f, good, done, done-good
	if err := w.Sync(); err != nil { // records the windows kept, when fewer
		w.f.Close()
		w.f = nil
		return nil, fmt.Errorf("continuing teacher store %s: %w", w.tmp, err)
	}
	return w, nil
}

// intact is the number of windows of the partial file f, of size bytes,
// that are whole and pass their checksums, counted from window 0 up to
// done (the windows its header records): the first that ends past size or
// whose record does not sum to its checksum ends them.
func (w *Writer) intact(f *os.File, size int64, done int) (int, error) {
	h := w.h
	table := make([]byte, 4*done)
	n := min(max(size-HeaderSize, 0), int64(len(table))) / 4 * 4
	if _, err := f.ReadAt(table[:n], HeaderSize); err != nil {
		return 0, fmt.Errorf("reading its window checksums: %w", err)
	}
	le := binary.LittleEndian
	for i := range done {
		off := h.dataOffset() + int64(i)*h.RecordBytes()
		if int64(4*(i+1)) > n || off+h.RecordBytes() > size {
			return i, nil // cut off
		}
		if _, err := f.ReadAt(w.rec, off); err != nil {
			return 0, fmt.Errorf("reading window %d: %w", i, err)
		}
		if crc32.Checksum(w.rec, castagnoli) != le.Uint32(table[4*i:]) {
			return i, nil // damaged
		}
	}
	return done, nil
}

// fail closes and removes a store that could not be started.
func (w *Writer) fail(err error) error {
	w.f.Close()
	os.Remove(w.tmp)
	return err
}

func (w *Writer) writeHeader() error {
	if _, err := w.f.WriteAt(w.h.encode(w.done), 0); err != nil {
		return fmt.Errorf("writing teacher store %s: %w", w.tmp, err)
	}
	return nil
}

// Header is the header of the store being written.
func (w *Writer) Header() Header { return w.h }

// Done is the number of windows written: the next Append is window Done().
func (w *Writer) Done() int { return w.done }

// Dropped is the number of windows the header of a continued PATH.partial
// recorded as written that are written again: window Done() was cut off or
// damaged, and those after it go with it. It is 0 for a new store.
func (w *Writer) Dropped() int { return w.dropped }

// Append writes the next window: ids and probs [T*K] (row-major, as Rows
// returns them), rest [T] (each row's mass outside its ids). An id outside
// the vocabulary, a probability or rest that is not in [0, 1], or a window
// past the last is an error and nothing is written; slices of the wrong
// length panic.
func (w *Writer) Append(ids []int32, probs []float32, rest []float32) error {
	h := w.h
	T, K := h.Ctx, h.K
	if len(ids) != T*K || len(probs) != T*K || len(rest) != T {
		panic(fmt.Sprintf("teacherstore: Append len(ids) = %d, len(probs) = %d, len(rest) = %d, want %d, %d, %d", len(ids), len(probs), len(rest), T*K, T*K, T))
	}
	if w.done >= h.Windows {
		return fmt.Errorf("teacher store %s: all %d windows are written", w.tmp, h.Windows)
	}
	le := binary.LittleEndian
	n, ib := T*K, h.idBytes()
	rec := w.rec
	for i, id := range ids {
		if id < 0 || int(id) >= h.Vocab {
			return fmt.Errorf("teacher store window %d position %d: id %d outside the vocabulary %d", w.done, i/K, id, h.Vocab)
		}
		if ib == 2 {
			le.PutUint16(rec[2*i:], uint16(id))
		} else {
			le.PutUint32(rec[4*i:], uint32(id))
		}
	}
	pb := rec[n*ib:]
	for i, p := range probs {
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("teacher store window %d position %d: probability %v outside [0, 1]", w.done, i/K, p)
		}
		if h.Dtype == Float32 {
			le.PutUint32(pb[4*i:], math.Float32bits(p))
		} else {
			le.PutUint16(pb[2*i:], halfFromFloat32(p))
		}
	}
	rb := rec[n*(ib+h.Dtype.Size()):]
	for t, r := range rest {
		if !(r >= 0 && r <= 1) {
			return fmt.Errorf("teacher store window %d position %d: rest mass %v outside [0, 1]", w.done, t, r)
		}
		le.PutUint32(rb[4*t:], math.Float32bits(r))
	}
	off := h.dataOffset() + int64(w.done)*h.RecordBytes()
	if _, err := w.f.WriteAt(rec, off); err != nil {
		return fmt.Errorf("writing teacher store %s: %w", w.tmp, err)
	}
	le.PutUint32(w.crc[:], crc32.Checksum(rec, castagnoli))
	if _, err := w.f.WriteAt(w.crc[:], HeaderSize+4*int64(w.done)); err != nil {
		return fmt.Errorf("writing teacher store %s: %w", w.tmp, err)
	}
	w.done++
	return nil
}

// Sync flushes the windows written to disk and then records their number
// in the header: a Writer created after a crash continues from there.
func (w *Writer) Sync() error {
	if w.f == nil {
		return fmt.Errorf("teacher store %s: sync after close", w.tmp)
	}
	if w.done == w.synced {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing teacher store %s: %w", w.tmp, err)
	}
	if err := w.writeHeader(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing teacher store %s: %w", w.tmp, err)
	}
	w.synced = w.done
	return nil
}

// Finish syncs a store whose every window is written, closes it, reads it
// back to verify its header, length and every window's checksum, and only
// then renames it to its path (and syncs the folder): PATH is only ever a
// complete store that passed. Before the last window it is an error
// wrapping ErrIncomplete; a store that fails its verification is an error
// that names what is wrong, and stays at PATH.partial.
func (w *Writer) Finish() error {
	_, err := w.finish()
	return err
}

// finish is Finish, returning the mean mass the stored top K keep
// (Store.Verify).
func (w *Writer) finish() (meanKept float64, err error) {
	if w.done != w.h.Windows {
		return 0, fmt.Errorf("teacher store %s: %w: %d of %d windows written", w.tmp, ErrIncomplete, w.done, w.h.Windows)
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	kept, err := verifyFile(w.tmp, w.h)
	if err != nil {
		return 0, fmt.Errorf("finishing teacher store %s: %w; it is not renamed to %s but left at %s: "+
			"writing the store again (teacher-dump) rewrites it from its first damaged window, or remove it to start over", w.path, err, w.path, w.tmp)
	}
	if err := os.Rename(w.tmp, w.path); err != nil {
		return 0, fmt.Errorf("teacher store: %w", err)
	}
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return kept, nil
}

// verifyFile opens the store at path, checks that its header is h and
// verifies every window (Store.Verify).
func verifyFile(path string, h Header) (meanKept float64, err error) {
	s, err := Open(path)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if err := s.Check(h); err != nil {
		return 0, err
	}
	return s.Verify()
}

// Close syncs what is written and closes the file, leaving PATH.partial to
// be continued. It is safe to call more than once.
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.Sync()
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing teacher store %s: %w", w.tmp, cerr)
	}
	w.f = nil
	return err
}
