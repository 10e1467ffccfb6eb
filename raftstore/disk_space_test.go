//go:build linux || darwin || freebsd

package raftstore

import "testing"

func TestDiskSpace(t *testing.T) {
	capacity, available, ok := diskSpace(t.TempDir())
	if !ok || capacity == 0 || available > capacity {
		t.Fatalf("diskSpace = %d, %d, %v; want a capacity and at most that much available", capacity, available, ok)
	}
	if _, _, ok := diskSpace("/does/not/exist"); ok {
		t.Fatal("diskSpace of a missing directory reported space")
	}
}
