// Package idalloc hands out the cluster's unique ids (store, region and peer
// ids share one sequence).
//
// Ids are reserved from storage in batches: the allocator persists a new high
// water mark (the last id it may hand out) before handing out any id below
// it, so a restarted or newly elected scheduler, which starts above the
// persisted mark, never reuses an id. A crash wastes at most one batch.
package idalloc

import (
	"context"
	"fmt"
	"sync"
)

// DefaultBatch is how many ids one persisted reservation covers.
const DefaultBatch = 1000

// maxCASRetries bounds the retries of a reservation that lost a race, which
// happens only when two schedulers both believe they lead.
const maxCASRetries = 10

// Store persists the high water mark (storage.Storage implements it).
type Store interface {
	LoadAllocID(ctx context.Context) (uint64, error)
	CASAllocID(ctx context.Context, old, new uint64) (bool, error)
}

// Allocator hands out ids. It is safe for concurrent use.
type Allocator struct {
	store Store
	batch uint64

	// mu protects the reserved range: ids in (last, end] may be handed out.
	// Invariant: last <= end, and end is persisted in store.
	mu     sync.Mutex
	last   uint64
	end    uint64
	loaded bool
}

// New returns an Allocator over store reserving batch ids at a time
// (DefaultBatch if batch is 0).
func New(store Store, batch uint64) *Allocator {
	if batch == 0 {
		batch = DefaultBatch
	}
	return &Allocator{store: store, batch: batch}
}

// Alloc returns a new id; ids are > 0 and increase.
func (a *Allocator) Alloc(ctx context.Context) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == a.end || !a.loaded {
		if err := a.reserveLocked(ctx, 1); err != nil {
			return 0, err
		}
	}
	a.last++
	return a.last, nil
}

// AllocN returns n new ids.
func (a *Allocator) AllocN(ctx context.Context, n int) ([]uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]uint64, 0, n)
	for len(ids) < n {
		if a.last == a.end || !a.loaded {
			if err := a.reserveLocked(ctx, uint64(n-len(ids))); err != nil {
				return nil, err
			}
		}
		a.last++
		ids = append(ids, a.last)
	}
	return ids, nil
}

// reserveLocked persists a new high water mark covering at least need more
// ids. On the first call it starts from the persisted mark, discarding
// nothing below it.
func (a *Allocator) reserveLocked(ctx context.Context, need uint64) error {
	for range maxCASRetries {
		if !a.loaded {
			end, err := a.store.LoadAllocID(ctx)
			if err != nil {
				return fmt.Errorf("idalloc: %w", err)
			}
			a.last, a.end, a.loaded = end, end, true
		}
		step := max(a.batch, need)
		ok, err := a.store.CASAllocID(ctx, a.end, a.end+step)
		if err != nil {
			return fmt.Errorf("idalloc: %w", err)
		}
		if ok {
			a.last = a.end
			a.end += step
			return nil
		}
		// Someone else moved the mark: reload and start above it.
		a.loaded = false
	}
	return fmt.Errorf("idalloc: the persisted high water mark keeps moving (another scheduler is allocating?)")
}
