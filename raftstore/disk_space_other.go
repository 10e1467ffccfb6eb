//go:build !(linux || darwin || freebsd)

package raftstore

// diskSpace is unknown here: the heartbeat reports no capacity.
func diskSpace(string) (capacity, available uint64, ok bool) { return 0, 0, false }
