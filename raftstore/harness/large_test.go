package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestLargeWrites: values near Badger's per-transaction limit, many of them
// in one worker round, and one value far above it, all apply and read back.
// (A round's writes must be split across Badger transactions without ever
// splitting one peer's raft state.)
func TestLargeWrites(t *testing.T) {
	c := New(t, Options{Stores: 3, AttemptTimeout: 20 * time.Second})
	big := bytes.Repeat([]byte{'b'}, 12<<20)
	c.MustPut([]byte("big"), big)

	medium := bytes.Repeat([]byte{'m'}, 900<<10) // under Badger's value threshold: counted in full
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for {
				// A put is idempotent: retry through ambiguous outcomes (a
				// leader change under this load can leave one unknown).
				err := c.Put(ctx, []byte(fmt.Sprintf("m%02d", i)), medium)
				if err == nil || !errors.Is(err, ErrUnknownOutcome) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := c.MustGet([]byte("big")); !bytes.Equal(got, big) {
		t.Fatalf("big value read back %d bytes", len(got))
	}
	for i := range 32 {
		c.MustGetEqual([]byte(fmt.Sprintf("m%02d", i)), medium)
	}
}
