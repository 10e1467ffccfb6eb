//go:build !linux

package transport

import (
	"syscall"
	"time"
)

// setUserTimeout: TCP_USER_TIMEOUT is Linux's; elsewhere keepalive alone
// notices a vanished store.
func setUserTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
