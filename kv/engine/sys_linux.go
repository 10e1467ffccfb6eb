package engine

import (
	"os"

	"golang.org/x/sys/unix"
)

// The Linux system calls behind the advisor (advise.go) and the write-out
// (writeback.go); sys_other.go has the no-ops other systems get. Both are
// hints to Linux's page cache, so their errors are ignored.

// startWriteOut starts writing out f's dirty pages; it does not wait.
func startWriteOut(f *os.File) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

// adviseRandom turns read-ahead off for the mapping [start, start+n).
// Addresses come from the kernel, not from a Go pointer, so this goes
// through the raw syscall.
func adviseRandom(start, n uintptr) {
	unix.Syscall(unix.SYS_MADVISE, start, n, unix.MADV_RANDOM)
}
