//go:build !unix

package raftlog

// The raft log needs a Unix system: it locks its directory with flock and
// renames and removes segment files that may still be open. On anything
// else the build stops here, with the reason in the missing name.
var _ = theRaftLogNeedsAUnixSystem
