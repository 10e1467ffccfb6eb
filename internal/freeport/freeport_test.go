package freeport

import (
	"net"
	"testing"
)

// TestPortsNeverRepeat: ports from many calls are all distinct, and each can
// be listened on.
func TestPortsNeverRepeat(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		for _, p := range Ports(t, 3) {
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
	for _, a := range Addrs(t, 2) {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("listen on %s: %v", a, err)
		}
		l.Close()
	}
}
