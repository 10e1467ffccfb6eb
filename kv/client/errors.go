package client

import (
	"errors"
	"fmt"
)

// Sentinel errors.
var (
	// ErrNotFound: Get found no value for the key.
	ErrNotFound = errors.New("regionkv: key not found")
	// ErrUnknownOutcome: a write may or may not have been applied (see the
	// package documentation). Errors that match it also say why.
	ErrUnknownOutcome = errors.New("regionkv: write outcome unknown (it may or may not have been applied)")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("regionkv: client closed")
	// ErrSchedulerUnreachable: New could not reach a scheduler leader.
	ErrSchedulerUnreachable = errors.New("regionkv: cannot reach the scheduler")
)

// StoreError is a failure a store reported in a response's error string: the
// request was well-formed and reached the right peer, but could not be served
// (an engine error, for example). It is not retried.
type StoreError struct {
	StoreID uint64
	Msg     string
}

func (e *StoreError) Error() string { return fmt.Sprintf("regionkv: store %d: %s", e.StoreID, e.Msg) }

// RegionError is a region error the client does not retry (RaftEntryTooLarge),
// or the last one seen when a call gave up.
type RegionError struct {
	RegionID uint64
	Msg      string
}

func (e *RegionError) Error() string {
	return fmt.Sprintf("regionkv: region %d: %s", e.RegionID, e.Msg)
}
