package idalloc_test

import (
	"context"
	"sync"
	"testing"

	"github.com/regionkv/regionkv/scheduler/idalloc"
	"github.com/regionkv/regionkv/scheduler/storage"
)

func TestAllocatorNeverReusesIDs(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMemory()
	seen := make(map[uint64]bool)
	var last uint64
	take := func(a *idalloc.Allocator, n int) {
		t.Helper()
		for range n {
			id, err := a.Alloc(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if id <= last || seen[id] {
				t.Fatalf("id %d after %d (seen before: %v)", id, last, seen[id])
			}
			seen[id], last = true, id
		}
	}
	// Three "restarts", each using part of a batch.
	for range 3 {
		take(idalloc.New(st, 10), 25)
	}
	mark, err := st.LoadAllocID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mark < last {
		t.Fatalf("persisted mark %d below the last id %d", mark, last)
	}
	ids, err := idalloc.New(st, 10).AllocN(ctx, 35)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if id <= last || seen[id] {
			t.Fatalf("AllocN returned %d after %d", id, last)
		}
		seen[id], last = true, id
	}
}

// TestAllocatorsRacing runs two allocators over one store, as two
// schedulers that both believe they lead would: they must not collide.
func TestAllocatorsRacing(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMemory()
	allocs := []*idalloc.Allocator{idalloc.New(st, 7), idalloc.New(st, 7)}
	var mu sync.Mutex
	seen := make(map[uint64]bool)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := allocs[g%2]
			for range 200 {
				id, err := a.Alloc(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[id] {
					t.Errorf("id %d allocated twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}
