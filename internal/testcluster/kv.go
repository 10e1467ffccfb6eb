package testcluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvrpcpb"
)

// The clients below send requests without a region context, as grpcurl
// would: the store routes them by key and forwards them to the leader. Like
// a real client they retry, until ctx ends, what may succeed later: region
// errors (an election, a split, a moved leader) and gRPC Unavailable,
// DeadlineExceeded of one attempt, and Unknown (a put is idempotent).

// attemptTimeout bounds one attempt.
const attemptTimeout = 5 * time.Second

func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.Canceled:
		return true
	}
	return false
}

// regionError is a region error in a response: worth retrying.
type regionError struct{ msg string }

func (e *regionError) Error() string { return "region error: " + e.msg }

// retry calls attempt until it succeeds, fails for good, or ctx ends.
func retry(ctx context.Context, attempt func(context.Context) error) error {
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := attempt(actx)
		cancel()
		var re *regionError
		switch {
		case err == nil:
			return nil
		case !errors.As(err, &re) && !retryable(err):
			return err
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Put writes key=value through store s.
func (s *Store) Put(ctx context.Context, key, value []byte) error {
	return retry(ctx, func(ctx context.Context) error {
		r, err := s.kv.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: key, Value: value})
		switch {
		case err != nil:
			return err
		case r.RegionError != nil:
			return &regionError{r.RegionError.String()}
		case r.Error != "":
			return errors.New(r.Error)
		}
		return nil
	})
}

// Get reads key through store s; found is false for a missing key.
func (s *Store) Get(ctx context.Context, key []byte) (value []byte, found bool, err error) {
	err = retry(ctx, func(ctx context.Context) error {
		r, err := s.kv.RawGet(ctx, &kvrpcpb.RawGetRequest{Key: key})
		switch {
		case err != nil:
			return err
		case r.RegionError != nil:
			return &regionError{r.RegionError.String()}
		case r.Error != "":
			return errors.New(r.Error)
		}
		value, found = r.Value, !r.NotFound
		return nil
	})
	return value, found, err
}

// MustPut is Put that fails the test on error.
func (s *Store) MustPut(ctx context.Context, key, value []byte) {
	s.c.t.Helper()
	if err := s.Put(ctx, key, value); err != nil {
		s.c.t.Fatalf("put %q through %s: %v", key, s.Name, err)
	}
}

// MustGetEqual fails the test unless key reads as want through s.
func (s *Store) MustGetEqual(ctx context.Context, key, want []byte) {
	s.c.t.Helper()
	v, found, err := s.Get(ctx, key)
	switch {
	case err != nil:
		s.c.t.Fatalf("get %q through %s: %v", key, s.Name, err)
	case !found:
		s.c.t.Fatalf("get %q through %s: not found, want %q", key, s.Name, want)
	case string(v) != string(want):
		s.c.t.Fatalf("get %q through %s = %q, want %q", key, s.Name, v, want)
	}
}
