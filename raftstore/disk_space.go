//go:build linux || darwin || freebsd

package raftstore

import "golang.org/x/sys/unix"

// diskSpace returns the size of the file system holding dir and the bytes
// of it free for an unprivileged user, for the store heartbeat.
func diskSpace(dir string) (capacity, available uint64, ok bool) {
	var fs unix.Statfs_t
	if unix.Statfs(dir, &fs) != nil {
		return 0, 0, false
	}
	return uint64(fs.Blocks) * uint64(fs.Bsize), uint64(fs.Bavail) * uint64(fs.Bsize), true
}
