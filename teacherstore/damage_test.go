package teacherstore

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klring/klring/kernels"
)

// damage applies mod to the file at path.
func damage(t *testing.T, path string, mod func(f *os.File)) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	mod(f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func truncateAt(n int64) func(*os.File) {
	return func(f *os.File) {
		if err := f.Truncate(n); err != nil {
			panic(err)
		}
	}
}

func flipByteAt(off int64) func(*os.File) {
	return func(f *os.File) {
		b := []byte{0}
		if _, err := f.ReadAt(b, off); err != nil {
			panic(err)
		}
		b[0] ^= 0x40
		if _, err := f.WriteAt(b, off); err != nil {
			panic(err)
		}
	}
}

// A partial store whose windows are cut off or damaged is continued from
// the first such window, not after the count its header records, and ends
// bit-identical to a store written in one go.
func TestResumeDropsDamagedWindows(t *testing.T) {
	h := testHeader()
	R := h.RecordBytes()
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.topk")
	writeStore(t, whole, h, 7)
	want, err := os.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	const synced = 10
	for _, tc := range []struct {
		name string
		mod  func(*os.File)
		done int // windows kept
	}{
		{"intact", func(*os.File) {}, synced},
		{"cut inside window 6", truncateAt(h.dataOffset() + 6*R + R/2), 6},
		{"cut at the end of window 7", truncateAt(h.dataOffset() + 8*R), 8},
		{"cut after the header", truncateAt(HeaderSize), 0},
		{"cut inside the checksums", truncateAt(HeaderSize + 4*4 + 2), 0},
		{"record byte of window 3", flipByteAt(h.dataOffset() + 3*R + 5), 3},
		{"checksum of window 2", flipByteAt(HeaderSize + 4*2 + 1), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.topk")
			rng := rand.New(rand.NewPCG(7, 1))
			w, err := Create(path, h)
			if err != nil {
				t.Fatal(err)
			}
			for range synced {
				if err := w.Append(randomWindow(rng, h)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			damage(t, PartialPath(path), tc.mod)

			w, err = Create(path, h)
			if err != nil {
				t.Fatal(err)
			}
			if w.Done() != tc.done || w.Dropped() != synced-tc.done {
				t.Fatalf("continued a partial store recording %d windows: Done() = %d, Dropped() = %d; want %d, %d",
					synced, w.Done(), w.Dropped(), tc.done, synced-tc.done)
			}
			// The header now records the windows kept: a crash here
			// continues from them too.
			w.f.Close()
			if w, err = Create(path, h); err != nil {
				t.Fatal(err)
			}
			if w.Done() != tc.done || w.Dropped() != 0 {
				t.Fatalf("Create after a crash: Done() = %d, Dropped() = %d; want %d, 0", w.Done(), w.Dropped(), tc.done)
			}
			rng = rand.New(rand.NewPCG(7, 1))
			for range w.Done() {
				randomWindow(rng, h) // the windows kept
			}
			for w.Done() < h.Windows {
				if err := w.Append(randomWindow(rng, h)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Finish(); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
				t.Fatal("the continued store differs from the one written in one go")
			}
		})
	}
}

// Finish verifies the store before renaming it: a store damaged after its
// windows were written never reaches its path, and stays at PATH.partial
// to be continued from its damaged window.
func TestFinishVerifiesBeforeRename(t *testing.T) {
	h := testHeader()
	R := h.RecordBytes()
	for _, tc := range []struct {
		name string
		mod  func(*os.File)
		want string
		done int // windows the next Create keeps
	}{
		{"record", flipByteAt(h.dataOffset() + 17*R + 3), "window 17's checksum", 17},
		{"short", truncateAt(h.FileBytes() - 1), "file length", 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.topk")
			w, err := Create(path, h)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 1))
			for range h.Windows {
				if err := w.Append(randomWindow(rng, h)); err != nil {
					t.Fatal(err)
				}
			}
			damage(t, PartialPath(path), tc.mod)
			err = w.Finish()
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "left at "+PartialPath(path)) || !strings.Contains(err.Error(), "not renamed") {
				t.Fatalf("Finish of a damaged store: %v; want ErrFormat saying %q, that it is not renamed and left at %s", err, tc.want, PartialPath(path))
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a store that failed its verification is at its path (%v)", err)
			}
			w, err = Create(path, h)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if w.Done() != tc.done {
				t.Fatalf("Create over the store that failed: Done() = %d; want %d", w.Done(), tc.done)
			}
		})
	}
}

// The reviewer's case: a dump stopped part-way whose partial file is then
// cut short is continued from the cut, and its store verifies, instead of
// being renamed into place and found damaged afterwards.
func TestDumpContinuesCutPartial(t *testing.T) {
	pool := kernels.NewPool(2)
	teacher := tinyModel(t, 7, pool)
	data := tinyData(t, 16, 30)
	whole, _ := dumpTiny(t, teacher, data, DumpOptions{K: 5, Dtype: Float16, Batch: 4, Pool: pool})
	want, err := os.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		cut           func(Header) int64
		resumed, redo int
	}{
		{"inside window 5", func(h Header) int64 { return h.dataOffset() + 5*h.RecordBytes() + 100 }, 5, 7},
		{"after the header", func(Header) int64 { return HeaderSize }, 0, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cut.topk")
			o := DumpOptions{K: 5, Dtype: Float16, Batch: 4, Pool: pool, TeacherSHA256: fakeSHA, SyncEvery: 1}
			st := stopDumpAt(t, path, teacher, data, o, 12)
			damage(t, PartialPath(path), truncateAt(tc.cut(st.Header)))
			st, err := Dump(context.Background(), path, teacher, data, o)
			if err != nil {
				t.Fatalf("dump over a cut partial store: %v", err)
			}
			if st.Resumed != tc.resumed || st.Dropped != tc.redo || st.NewTokens != (30-tc.resumed)*16 {
				t.Fatalf("dump over a cut partial store: %+v; want %d windows resumed, %d dropped", st, tc.resumed, tc.redo)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
				t.Fatal("the store continued over a cut partial differs from the one dumped in one go")
			}
		})
	}
}

// A damaged store at the output is not taken for complete nor written
// over: the error says what is wrong and to remove it.
func TestDumpRefusesDamagedOutput(t *testing.T) {
	pool := kernels.NewPool(1)
	teacher := tinyModel(t, 7, pool)
	data := tinyData(t, 16, 6)
	o := DumpOptions{K: 4, Pool: pool, TeacherSHA256: fakeSHA}
	good, st := dumpTiny(t, teacher, data, o)
	h := st.Header
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
		want error
		says string
	}{
		{"record", func(b []byte) []byte { b[h.dataOffset()+2*h.RecordBytes()+9] ^= 1; return b }, ErrFormat, "window 2's checksum"},
		{"short", func(b []byte) []byte { return b[:len(b)-3] }, ErrFormat, "file length"},
		{"incomplete", func(b []byte) []byte { copy(b, h.encode(3)); return b }, ErrIncomplete, "3 of 6 windows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.topk")
			b := tc.mod(bytes.Clone(orig))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Dump(context.Background(), path, teacher, data, o)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "remove "+path) {
				t.Fatalf("Dump over a damaged store: %v; want %v saying %q and to remove %s", err, tc.want, tc.says, path)
			}
			if strings.Contains(err.Error(), "run teacher-dump again to finish it") {
				t.Errorf("Dump over a damaged store: %v; a run again would fail again", err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, b) {
				t.Fatal("Dump changed the damaged store at its output")
			}
		})
	}
}
