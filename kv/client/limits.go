package client

import "github.com/regionkv/regionkv/internal/routekey"

// Request limits of the raw API, as kv/server enforces them (a test checks
// that they agree). The client splits batches so that every request stays
// within them; a single key or value beyond them is refused by the store with
// InvalidArgument.
const (
	maxKeySize    = routekey.MaxKeySize
	maxBatchKeys  = 16 << 10
	maxBatchBytes = 16 << 20
	maxScanLimit  = 100_000
	// maxGRPCMessage is the largest message a store accepts.
	maxGRPCMessage = 32 << 20
)
