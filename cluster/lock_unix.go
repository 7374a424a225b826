//go:build unix

package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// lockRunDir takes an exclusive lock on run.dir (flock of its
// coordinator.lock, released by the kernel when the process ends, however
// it ends) for as long as a coordinator writes there: a second coordinator
// on the same run.dir would resume from the same checkpoints and write the
// same metrics, ledger and checkpoints. The file names the holder.
func lockRunDir(runDir, run string) (release func(), err error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("locking run.dir: %w", err)
	}
	path := filepath.Join(runDir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking run.dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			owner, _ := os.ReadFile(path)
			return nil, fmt.Errorf("%w: run.dir %s is in use by another coordinator (%s): stop it first, or give this one another run.dir",
				ErrRunDirBusy, runDir, strings.TrimSpace(string(owner)))
		}
		return nil, fmt.Errorf("locking run.dir %s: %w", runDir, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d on host %s, run %s\n", os.Getpid(), hostname(), run)
	}
	return func() { f.Close() }, nil
}
