package server

import (
	"bytes"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/kv/engine"
)

// Validation. Every function here returns nil or a gRPC InvalidArgument
// status whose message names the offending field.

func invalidf(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// errNilRequest is returned for a nil request, which gRPC never passes but a
// direct caller might.
var errNilRequest = invalidf("request is nil")

func checkCF(cf string) error {
	if _, err := engine.CFByte(cf); err != nil {
		return invalidf("cf: %v (want one of \"\", %q, %q, %q)", err, engine.CFDefault, engine.CFLock, engine.CFWrite)
	}
	return nil
}

// checkKey validates a point key: non-empty and at most MaxKeySize bytes.
func checkKey(field string, key []byte) error {
	if len(key) == 0 {
		return invalidf("%s is empty", field)
	}
	return checkBound(field, key)
}

// checkBound validates a range bound, which may be empty (unbounded).
func checkBound(field string, key []byte) error {
	if len(key) > MaxKeySize {
		return invalidf("%s is %d bytes, more than the %d allowed", field, len(key), MaxKeySize)
	}
	return nil
}

func checkValue(field string, value []byte) error {
	if len(value) > MaxValueSize {
		return invalidf("%s is %d bytes, more than the %d allowed", field, len(value), MaxValueSize)
	}
	return nil
}

// checkRange validates [start, end): both bounds in size, and start <= end
// unless end is empty (unbounded).
func checkRange(startField string, start []byte, endField string, end []byte) error {
	if err := checkBound(startField, start); err != nil {
		return err
	}
	if err := checkBound(endField, end); err != nil {
		return err
	}
	if len(end) > 0 && bytes.Compare(start, end) > 0 {
		return invalidf("%s %q is after %s %q", startField, start, endField, end)
	}
	return nil
}

// checkKeys validates the keys of a batch: at most MaxBatchKeys of them,
// each a valid key, together at most MaxBatchBytes.
func checkKeys(keys [][]byte) error {
	if len(keys) > MaxBatchKeys {
		return invalidf("batch has %d keys, more than the %d allowed", len(keys), MaxBatchKeys)
	}
	total := 0
	for i, k := range keys {
		if err := checkKey(fmt.Sprintf("keys[%d]", i), k); err != nil {
			return err
		}
		total += len(k)
	}
	if total > MaxBatchBytes {
		return invalidf("batch keys total %d bytes, more than the %d allowed", total, MaxBatchBytes)
	}
	return nil
}

// checkScanLimit turns a request's limit into the number of pairs to return.
func checkScanLimit(limit uint32) (int, error) {
	switch {
	case limit == 0:
		return DefaultScanLimit, nil
	case limit > MaxScanLimit:
		return 0, invalidf("limit %d is more than the %d allowed", limit, MaxScanLimit)
	}
	return int(limit), nil
}
