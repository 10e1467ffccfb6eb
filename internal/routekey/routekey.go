// Package routekey finds the region of the keys just below a bound, which
// reverse scans need: the store (kv/server) and the Go client (kv/client)
// both route by it.
package routekey

import "bytes"

// MaxKeySize is the largest key, in bytes, a request may carry; region
// boundaries are user keys, so they obey it too. kv/server.MaxKeySize is
// this value.
const MaxKeySize = 8 << 10

// max sorts after every key a request may carry, so it lies in the last
// region. It is never modified.
var max = bytes.Repeat([]byte{0xff}, MaxKeySize+1)

// Before returns a key of the region that holds the largest keys below
// upper; an empty upper means no bound.
//
// Byte strings have no immediate predecessor in general, but region
// boundaries are keys of at most MaxKeySize bytes. If upper ends in 0x00,
// dropping that byte gives its exact predecessor. Otherwise, with upper =
// p+[c], the key p+[c-1]+0xff*MaxKeySize is below upper and above every key
// of at most MaxKeySize bytes that is below upper, so no region boundary
// falls between it and upper.
func Before(upper []byte) []byte {
	n := len(upper)
	switch {
	case n == 0:
		return max
	case upper[n-1] == 0:
		return upper[: n-1 : n-1]
	}
	k := make([]byte, n, n+MaxKeySize)
	copy(k, upper)
	k[n-1]--
	return append(k, max[:MaxKeySize]...)
}
