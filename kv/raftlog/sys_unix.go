//go:build unix && !linux

package raftlog

import (
	"fmt"
	"os"
)

// The fallbacks of sys_linux.go on other Unix systems (macOS, the BSDs), for
// development: the log is as durable there, only slower.

// oDirect is zero: the log appends through the page cache (direct.go).
const oDirect = 0

func noDirectIO(error) bool { return false }

// fdatasync flushes f with File.Sync, which on macOS asks the disk to flush
// its cache too (F_FULLFSYNC), as Linux's fdatasync does.
func fdatasync(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("raftlog: fsync %s: %w", f.Name(), err)
	}
	return nil
}

// writeOutRange does nothing: it only paces writes that a sync makes durable.
func writeOutRange(*os.File, int64, int64) error { return nil }
