package raftlog

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The system calls the log makes that differ between systems. Linux is the
// system the store is built and tuned for; sys_unix.go has the fallbacks
// other Unix systems get.

// oDirect is the open flag of direct I/O (direct.go).
const oDirect = unix.O_DIRECT

// noDirectIO reports whether err is a file system's refusal of O_DIRECT.
func noDirectIO(err error) bool { return errors.Is(err, unix.EINVAL) }

// fdatasync flushes f's data, and its size when that changed.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("raftlog: fdatasync %s: %w", f.Name(), err)
		}
		return nil
	}
}

// writeOutRange writes f's n bytes at off to disk and waits for them,
// without flushing the disk's cache: it paces a large write, it does not
// make it durable. A file system without sync_file_range only loses the
// pacing; a write error is returned, as the call consumes it and a later
// sync would not see it.
func writeOutRange(f *os.File, off, n int64) error {
	err := unix.SyncFileRange(int(f.Fd()), off, n,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	if err != nil && err != unix.ENOSYS && err != unix.EINVAL && err != unix.EOPNOTSUPP {
		return err
	}
	return nil
}
