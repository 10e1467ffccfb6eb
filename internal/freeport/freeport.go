// Package freeport hands tests loopback ports for the servers they start.
package freeport

import (
	"fmt"
	"net"
	"sync"
	"testing"
)

var given struct {
	mu    sync.Mutex
	ports map[int]bool
}

// Ports returns n loopback ports that were free a moment ago, distinct from
// each other and from every port an earlier call in this process returned:
// the kernel may hand a closed listener's port out again at once, and two
// servers of one test given the same port fail to start ("address already
// in use"). Another process can still take one before the caller listens.
func Ports(tb testing.TB, n int) []int {
	tb.Helper()
	given.mu.Lock()
	defer given.mu.Unlock()
	if given.ports == nil {
		given.ports = make(map[int]bool)
	}
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l) // open until all are picked, so none repeats
		if p := l.Addr().(*net.TCPAddr).Port; !given.ports[p] {
			given.ports[p] = true
			ports = append(ports, p)
		}
	}
	return ports
}

// Addrs returns n addresses "127.0.0.1:port" on ports from Ports.
func Addrs(tb testing.TB, n int) []string {
	tb.Helper()
	var addrs []string
	for _, p := range Ports(tb, n) {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return addrs
}
