package router

import (
	"errors"
	"flag"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("router.seed", 0, "seed for randomized router tests (0: time-based)")

// testSeed returns the seed for a randomized test and logs it so that a
// failure can be replayed with -router.seed.
func testSeed(t testing.TB) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed: %d (rerun with -router.seed=%d)", seed, seed)
	return seed
}

// waitTimeout bounds how long a test waits for a goroutine that should
// finish promptly; it only matters when the test is failing.
const waitTimeout = 10 * time.Second

type testRouter = Router[string, int, string]

func newTestRouter(t testing.TB, regions ...uint64) *testRouter {
	t.Helper()
	r := New[string, int, string]()
	for _, id := range regions {
		if err := r.Register(id, fsmName(id)); err != nil {
			t.Fatalf("Register(%d): %v", id, err)
		}
	}
	return r
}

func fsmName(id uint64) string { return "fsm-" + string(rune('a'+id%26)) }

// readyLen returns the number of entries on the ready queue.
func (r *Router[F, M, S]) readyLen() int {
	r.ready.mu.Lock()
	defer r.ready.mu.Unlock()
	return r.ready.len
}

func mustSend(t testing.TB, r *testRouter, id uint64, msgs ...int) {
	t.Helper()
	for _, m := range msgs {
		if err := r.Send(id, m); err != nil {
			t.Fatalf("Send(%d, %d): %v", id, m, err)
		}
	}
}

// fetchReady fetches up to limit batches, failing the test if nothing is
// ready (which would make Fetch block).
func fetchReady(t testing.TB, r *testRouter, limit int) []Batch[string, int] {
	t.Helper()
	if r.readyLen() == 0 {
		t.Fatalf("Fetch: nothing ready")
	}
	out, ok := r.Fetch(nil, limit)
	if !ok {
		t.Fatalf("Fetch: ok=false")
	}
	return out
}

type batchView struct {
	region uint64
	msgs   []int
}

func view(bs []Batch[string, int]) []batchView {
	var v []batchView
	for _, b := range bs {
		v = append(v, batchView{b.RegionID, slices.Clone(b.Msgs)})
	}
	return v
}

func equalViews(a, b []batchView) bool {
	return slices.EqualFunc(a, b, func(x, y batchView) bool {
		return x.region == y.region && slices.Equal(x.msgs, y.msgs)
	})
}

func releaseAll(r *testRouter, bs []Batch[string, int]) {
	for i := range bs {
		r.Release(&bs[i])
	}
}

// TestScheduling drives the router single-threaded through scripted steps and
// checks what Fetch hands out.
func TestScheduling(t *testing.T) {
	type step struct {
		send    map[uint64][]int // sends, applied in ascending region order
		wake    []uint64
		fetch   int         // if > 0, Fetch with this limit
		want    []batchView // expected batches from the fetch
		release bool        // release everything fetched so far
		idle    bool        // expect an empty ready queue after the step
	}
	tests := []struct {
		name    string
		regions []uint64
		steps   []step
	}{
		{
			name:    "messages in send order, one batch per region",
			regions: []uint64{1, 2},
			steps: []step{
				{send: map[uint64][]int{1: {10, 11, 12}, 2: {20}}},
				{fetch: 10, want: []batchView{{1, []int{10, 11, 12}}, {2, []int{20}}}, idle: true},
				{release: true, idle: true},
			},
		},
		{
			name:    "fetch returns at most limit batches",
			regions: []uint64{1, 2, 3},
			steps: []step{
				{send: map[uint64][]int{1: {1}, 2: {2}, 3: {3}}},
				{fetch: 2, want: []batchView{{1, []int{1}}, {2, []int{2}}}},
				{fetch: 2, want: []batchView{{3, []int{3}}}, idle: true},
				{release: true, idle: true},
			},
		},
		{
			name:    "limit below one fetches one",
			regions: []uint64{1, 2},
			steps: []step{
				{send: map[uint64][]int{1: {1}, 2: {2}}},
				{fetch: -1, want: []batchView{{1, []int{1}}}},
			},
		},
		{
			name:    "message during run re-queues at the back",
			regions: []uint64{1, 2},
			steps: []step{
				{send: map[uint64][]int{1: {1}}},
				{fetch: 1, want: []batchView{{1, []int{1}}}, idle: true},
				{send: map[uint64][]int{1: {2, 3}, 2: {20}}},
				{release: true},
				{fetch: 10, want: []batchView{{2, []int{20}}, {1, []int{2, 3}}}, idle: true},
			},
		},
		{
			name:    "release without news goes idle",
			regions: []uint64{1},
			steps: []step{
				{send: map[uint64][]int{1: {1}}},
				{fetch: 1, want: []batchView{{1, []int{1}}}},
				{release: true, idle: true},
				{send: map[uint64][]int{1: {2}}},
				{fetch: 1, want: []batchView{{1, []int{2}}}},
			},
		},
		{
			name:    "wake idle mailbox gives an empty batch",
			regions: []uint64{1},
			steps: []step{
				{wake: []uint64{1, 1}},
				{fetch: 10, want: []batchView{{1, nil}}, idle: true},
				{release: true, idle: true},
			},
		},
		{
			name:    "wake while running re-queues on release",
			regions: []uint64{1},
			steps: []step{
				{send: map[uint64][]int{1: {1}}},
				{fetch: 1, want: []batchView{{1, []int{1}}}},
				{wake: []uint64{1}, idle: true},
				{release: true},
				{fetch: 1, want: []batchView{{1, nil}}},
				{release: true, idle: true},
			},
		},
		{
			name:    "wake while queued does not queue twice",
			regions: []uint64{1},
			steps: []step{
				{send: map[uint64][]int{1: {1}}},
				{wake: []uint64{1}},
				{fetch: 10, want: []batchView{{1, []int{1}}}, idle: true},
				{release: true, idle: true},
			},
		},
		{
			name:    "wake absent region is a no-op",
			regions: []uint64{1},
			steps: []step{
				{wake: []uint64{7}, idle: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRouter(t, tt.regions...)
			var held []Batch[string, int]
			for i, s := range tt.steps {
				ids := make([]uint64, 0, len(s.send))
				for id := range s.send {
					ids = append(ids, id)
				}
				slices.Sort(ids)
				for _, id := range ids {
					mustSend(t, r, id, s.send[id]...)
				}
				for _, id := range s.wake {
					r.Wake(id)
				}
				if s.fetch != 0 {
					got := fetchReady(t, r, s.fetch)
					if !equalViews(view(got), s.want) {
						t.Fatalf("step %d: Fetch = %v, want %v", i, view(got), s.want)
					}
					for _, b := range got {
						if b.FSM != fsmName(b.RegionID) {
							t.Fatalf("step %d: FSM of region %d = %q", i, b.RegionID, b.FSM)
						}
					}
					held = append(held, got...)
				}
				if s.release {
					releaseAll(r, held)
					held = held[:0]
				}
				if s.idle && r.readyLen() != 0 {
					t.Fatalf("step %d: ready queue has %d entries, want 0", i, r.readyLen())
				}
			}
		})
	}
}

func TestRegistryErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func(r *testRouter) error
		want error
	}{
		{"send to absent region", func(r *testRouter) error { return r.Send(9, 1) }, ErrRegionNotFound},
		{"send to closed region", func(r *testRouter) error {
			r.Close(1)
			return r.Send(1, 1)
		}, ErrRegionNotFound},
		{"register twice", func(r *testRouter) error { return r.Register(1, "again") }, ErrRegionExists},
		{"register after close", func(r *testRouter) error {
			r.Close(1)
			if err := r.Register(1, "again"); err != nil {
				return err
			}
			return r.Send(1, 1)
		}, nil},
		{"send after stop", func(r *testRouter) error {
			r.Stop()
			return r.Send(1, 1)
		}, ErrStopped},
		{"send to absent region after stop", func(r *testRouter) error {
			r.Stop()
			return r.Send(9, 1)
		}, ErrStopped},
		{"register after stop", func(r *testRouter) error {
			r.Stop()
			return r.Register(2, "late")
		}, ErrStopped},
		{"send store after stop", func(r *testRouter) error {
			r.Stop()
			return r.SendStore("late")
		}, ErrStopped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRouter(t, 1)
			if err := tt.run(r); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestClose(t *testing.T) {
	t.Run("returns pending messages", func(t *testing.T) {
		r := newTestRouter(t, 1, 2)
		mustSend(t, r, 1, 1, 2, 3)
		if got := r.Close(1); !slices.Equal(got, []int{1, 2, 3}) {
			t.Fatalf("Close = %v, want [1 2 3]", got)
		}
		if r.Has(1) || !r.Has(2) || r.Len() != 1 {
			t.Fatalf("Has(1)=%v Has(2)=%v Len=%d, want false true 1", r.Has(1), r.Has(2), r.Len())
		}
		if got := r.Close(1); got != nil {
			t.Fatalf("second Close = %v, want nil", got)
		}
	})
	t.Run("queued mailbox is skipped by fetch", func(t *testing.T) {
		r := newTestRouter(t, 1, 2)
		mustSend(t, r, 1, 1)
		mustSend(t, r, 2, 2)
		r.Close(1)
		got := fetchReady(t, r, 10)
		if want := []batchView{{2, []int{2}}}; !equalViews(view(got), want) {
			t.Fatalf("Fetch = %v, want %v", view(got), want)
		}
	})
	t.Run("re-registered region gets a fresh mailbox", func(t *testing.T) {
		r := newTestRouter(t, 1)
		mustSend(t, r, 1, 1)
		r.Close(1)
		if err := r.Register(1, "new"); err != nil {
			t.Fatal(err)
		}
		mustSend(t, r, 1, 2)
		got := fetchReady(t, r, 10)
		if want := []batchView{{1, []int{2}}}; !equalViews(view(got), want) || got[0].FSM != "new" {
			t.Fatalf("Fetch = %v (FSM %q), want %v (FSM new)", view(got), got[0].FSM, want)
		}
	})
	t.Run("close while running", func(t *testing.T) {
		r := newTestRouter(t, 1)
		mustSend(t, r, 1, 1)
		got := fetchReady(t, r, 1)
		mustSend(t, r, 1, 2, 3)
		if pending := r.Close(1); !slices.Equal(pending, []int{2, 3}) {
			t.Fatalf("Close = %v, want [2 3]", pending)
		}
		if !slices.Equal(got[0].Msgs, []int{1}) {
			t.Fatalf("batch after Close = %v, want [1]", got[0].Msgs)
		}
		r.Release(&got[0])
		if r.readyLen() != 0 {
			t.Fatalf("closed mailbox re-queued on Release")
		}
	})
}

func TestRelease(t *testing.T) {
	t.Run("clears the batch", func(t *testing.T) {
		r := newTestRouter(t, 1)
		mustSend(t, r, 1, 1)
		got := fetchReady(t, r, 1)
		r.Release(&got[0])
		if got[0].Msgs != nil || got[0].mb != nil || got[0].RegionID != 0 {
			t.Fatalf("released batch not cleared: %+v", got[0])
		}
	})
	t.Run("reuses the message buffer", func(t *testing.T) {
		r := newTestRouter(t, 1)
		mustSend(t, r, 1, 1, 2)
		b := fetchReady(t, r, 1)[0]
		first := &b.Msgs[0]
		r.Release(&b)
		mustSend(t, r, 1, 3) // into a new buffer; the first one is the spare now
		b = fetchReady(t, r, 1)[0]
		r.Release(&b)
		mustSend(t, r, 1, 4)
		b = fetchReady(t, r, 1)[0]
		if &b.Msgs[0] != first || !slices.Equal(b.Msgs, []int{4}) {
			t.Fatalf("third batch %v does not reuse the first batch's buffer", b.Msgs)
		}
	})
	tests := []struct {
		name string
		run  func(t *testing.T, r *testRouter)
	}{
		{"twice", func(t *testing.T, r *testRouter) {
			b := fetchReady(t, r, 1)[0]
			r.Release(&b)
			r.Release(&b)
		}},
		{"stale copy", func(t *testing.T, r *testRouter) {
			b := fetchReady(t, r, 1)[0]
			stale := b
			r.Release(&b)
			mustSend(t, r, 1, 2)
			fetchReady(t, r, 1)
			r.Release(&stale)
		}},
		{"zero batch", func(_ *testing.T, r *testRouter) {
			r.Release(&Batch[string, int]{})
		}},
	}
	for _, tt := range tests {
		t.Run("panics on "+tt.name, func(t *testing.T) {
			r := newTestRouter(t, 1)
			mustSend(t, r, 1, 1)
			defer func() {
				if recover() == nil {
					t.Fatalf("Release did not panic")
				}
			}()
			tt.run(t, r)
		})
	}
}

func TestBroadcast(t *testing.T) {
	r := newTestRouter(t, 1, 2, 3, 4)
	mustSend(t, r, 2, 20)          // 2 is queued
	running := fetchReady(t, r, 1) // 2 is running
	r.Close(4)
	r.Broadcast(-1)
	mustSend(t, r, 1, 10)
	got := fetchReady(t, r, 10)
	want := []batchView{{1, []int{-1, 10}}, {3, []int{-1}}}
	if !equalViews(view(got), want) {
		t.Fatalf("Fetch = %v, want %v", view(got), want)
	}
	releaseAll(r, running)
	got = fetchReady(t, r, 10)
	if want := []batchView{{2, []int{-1}}}; !equalViews(view(got), want) {
		t.Fatalf("Fetch after Release = %v, want %v", view(got), want)
	}
	r.Stop()
	r.Broadcast(-2)
	if r.readyLen() != 0 {
		t.Fatalf("Broadcast after Stop scheduled mailboxes")
	}
}

// TestSteadyStateAllocs checks that a tick round (Broadcast, then every
// region fetched and released) allocates nothing once buffers have grown.
func TestSteadyStateAllocs(t *testing.T) {
	const regions = 100
	r := New[*int, int, string]()
	fsm := new(int)
	for id := uint64(1); id <= regions; id++ {
		if err := r.Register(id, fsm); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]Batch[*int, int], 0, regions)
	round := func() {
		r.Broadcast(1)
		if err := r.Send(1, 2); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < regions; {
			out, _ := r.Fetch(buf[:0], regions)
			for i := range out {
				r.Release(&out[i])
			}
			n += len(out)
		}
	}
	round() // grow the buffers
	round()
	if allocs := testing.AllocsPerRun(100, round); allocs != 0 {
		t.Fatalf("tick round allocates %v times, want 0", allocs)
	}
}

func TestStop(t *testing.T) {
	t.Run("unblocks fetch", func(t *testing.T) {
		r := newTestRouter(t, 1)
		done := make(chan bool)
		go func() {
			_, ok := r.Fetch(nil, 1)
			done <- ok
		}()
		r.Stop()
		select {
		case ok := <-done:
			if ok {
				t.Fatalf("Fetch after Stop: ok=true with nothing queued")
			}
		case <-time.After(waitTimeout):
			t.Fatalf("Fetch still blocked after Stop")
		}
	})
	t.Run("unblocks fetch store", func(t *testing.T) {
		r := newTestRouter(t)
		done := make(chan bool)
		go func() {
			_, ok := r.FetchStore(nil)
			done <- ok
		}()
		r.Stop()
		select {
		case ok := <-done:
			if ok {
				t.Fatalf("FetchStore after Stop: ok=true with nothing queued")
			}
		case <-time.After(waitTimeout):
			t.Fatalf("FetchStore still blocked after Stop")
		}
	})
	t.Run("fetch drains before reporting stop", func(t *testing.T) {
		r := newTestRouter(t, 1, 2)
		mustSend(t, r, 1, 1)
		mustSend(t, r, 2, 2)
		r.Stop()
		r.Stop() // idempotent
		r.Wake(1)
		got := fetchReady(t, r, 1)
		if err := r.Send(2, 3); !errors.Is(err, ErrStopped) {
			t.Fatalf("Send after Stop = %v, want ErrStopped", err)
		}
		releaseAll(r, got)
		got = fetchReady(t, r, 10)
		if want := []batchView{{2, []int{2}}}; !equalViews(view(got), want) {
			t.Fatalf("Fetch = %v, want %v", view(got), want)
		}
		if _, ok := r.Fetch(nil, 1); ok {
			t.Fatalf("Fetch: ok=true after the queue drained")
		}
	})
	t.Run("fetch store drains before reporting stop", func(t *testing.T) {
		r := newTestRouter(t)
		if err := r.SendStore("a"); err != nil {
			t.Fatal(err)
		}
		r.Stop()
		if got, ok := r.FetchStore(nil); !ok || !slices.Equal(got, []string{"a"}) {
			t.Fatalf("FetchStore = %v, %v; want [a], true", got, ok)
		}
		if _, ok := r.FetchStore(nil); ok {
			t.Fatalf("FetchStore: ok=true after drain")
		}
	})
}

func TestStoreMailbox(t *testing.T) {
	t.Run("order", func(t *testing.T) {
		r := newTestRouter(t)
		for _, m := range []string{"a", "b", "c"} {
			if err := r.SendStore(m); err != nil {
				t.Fatal(err)
			}
		}
		got, ok := r.FetchStore([]string{"kept"})
		if want := []string{"kept", "a", "b", "c"}; !ok || !slices.Equal(got, want) {
			t.Fatalf("FetchStore = %v, %v; want %v, true", got, ok, want)
		}
	})
	t.Run("concurrent senders", func(t *testing.T) {
		const senders, perSender = 4, 1000
		r := New[string, int, [2]int]()
		var wg sync.WaitGroup
		for s := range senders {
			wg.Go(func() {
				for i := range perSender {
					if err := r.SendStore([2]int{s, i}); err != nil {
						t.Errorf("SendStore: %v", err)
						return
					}
				}
			})
		}
		next := make([]int, senders)
		var buf [][2]int
		for n := 0; n < senders*perSender; {
			var ok bool
			buf, ok = r.FetchStore(buf[:0])
			if !ok {
				t.Fatalf("FetchStore: ok=false")
			}
			for _, m := range buf {
				if m[1] != next[m[0]] {
					t.Fatalf("sender %d: got message %d, want %d", m[0], m[1], next[m[0]])
				}
				next[m[0]]++
			}
			n += len(buf)
		}
		wg.Wait()
	})
}

// stressMsg identifies a message by sender and per-(sender, region) sequence.
type stressMsg struct {
	sender int
	seq    int
}

// stressFSM is the per-region state in TestConcurrentDelivery. Its fields are
// plain, not atomic: the router's Fetch/Release hand-off is what makes access
// from different workers safe, and the race detector checks that.
type stressFSM struct {
	held atomic.Int32 // CAS-guarded to catch two workers holding it at once
	next []int        // next expected seq per sender
	seen int
}

// TestConcurrentDelivery has many goroutines Send, Broadcast and Wake while
// four workers Fetch and Release. It checks that no mailbox is held by two
// workers at once and that every message arrives exactly once, in order per
// sender and region.
func TestConcurrentDelivery(t *testing.T) {
	const (
		regions    = 64
		senders    = 8
		perSender  = 4000
		broadcasts = 200
		workers    = 4
		broadcastS = senders // sender index of the broadcaster
	)
	seed := testSeed(t)
	r := New[*stressFSM, stressMsg, struct{}]()
	fsms := make([]*stressFSM, regions+1)
	for id := uint64(1); id <= regions; id++ {
		fsms[id] = &stressFSM{next: make([]int, senders+1)}
		if err := r.Register(id, fsms[id]); err != nil {
			t.Fatal(err)
		}
	}

	var workerWG sync.WaitGroup
	for w := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		workerWG.Go(func() {
			var buf []Batch[*stressFSM, stressMsg]
			for {
				var ok bool
				buf, ok = r.Fetch(buf[:0], 1+rng.IntN(8))
				if !ok {
					return
				}
				for i := range buf {
					b := &buf[i]
					f := b.FSM
					if !f.held.CompareAndSwap(0, 1) {
						t.Errorf("region %d held by two workers", b.RegionID)
						return
					}
					for _, m := range b.Msgs {
						if m.seq != f.next[m.sender] {
							t.Errorf("region %d sender %d: got seq %d, want %d", b.RegionID, m.sender, m.seq, f.next[m.sender])
						}
						f.next[m.sender] = m.seq + 1
						f.seen++
					}
					if rng.IntN(4) == 0 {
						runtime.Gosched()
					}
					if rng.IntN(8) == 0 {
						r.Wake(b.RegionID)
					}
					f.held.Store(0)
					r.Release(b)
				}
			}
		})
	}

	sent := make([][]int, senders) // sent[s][region], owned by sender s
	var senderWG sync.WaitGroup
	for s := range senders {
		sent[s] = make([]int, regions+1)
		rng := rand.New(rand.NewPCG(seed, uint64(workers+s)))
		senderWG.Go(func() {
			for range perSender {
				id := 1 + rng.Uint64N(regions)
				if err := r.Send(id, stressMsg{s, sent[s][id]}); err != nil {
					t.Errorf("Send(%d): %v", id, err)
					return
				}
				sent[s][id]++
				if rng.IntN(16) == 0 {
					r.Wake(1 + rng.Uint64N(regions))
				}
			}
		})
	}
	senderWG.Go(func() {
		for i := range broadcasts {
			r.Broadcast(stressMsg{broadcastS, i})
			runtime.Gosched()
		}
	})
	senderWG.Wait()
	r.Stop() // workers drain everything queued, then exit
	done := make(chan struct{})
	go func() { workerWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("workers did not exit after Stop")
	}

	total := 0
	for id := 1; id <= regions; id++ {
		f := fsms[id]
		for s := range senders {
			if f.next[s] != sent[s][id] {
				t.Errorf("region %d sender %d: delivered %d messages, sent %d", id, s, f.next[s], sent[s][id])
			}
		}
		if f.next[broadcastS] != broadcasts {
			t.Errorf("region %d: delivered %d broadcasts, want %d", id, f.next[broadcastS], broadcasts)
		}
		total += f.seen
	}
	if want := senders*perSender + regions*broadcasts; total != want {
		t.Errorf("delivered %d messages, want %d", total, want)
	}
}

// TestCloseRace closes and re-registers regions while senders and workers
// run, and checks that every successfully sent message is either handed to a
// worker or returned by Close, exactly once.
func TestCloseRace(t *testing.T) {
	const (
		regions   = 8
		senders   = 4
		perSender = 4000
		workers   = 4
		reopens   = 500
	)
	type gen struct{ held atomic.Int32 }
	seed := testSeed(t)
	r := New[*gen, int, struct{}]()
	for id := uint64(1); id <= regions; id++ {
		if err := r.Register(id, new(gen)); err != nil {
			t.Fatal(err)
		}
	}
	// accounted[m] counts deliveries plus Close returns of message m;
	// sentOK[m] is written only by m's sender.
	accounted := make([]atomic.Int32, senders*perSender)
	sentOK := make([]bool, senders*perSender)

	var workerWG sync.WaitGroup
	for range workers {
		workerWG.Go(func() {
			var buf []Batch[*gen, int]
			for {
				var ok bool
				buf, ok = r.Fetch(buf[:0], 4)
				if !ok {
					return
				}
				for i := range buf {
					b := &buf[i]
					if !b.FSM.held.CompareAndSwap(0, 1) {
						t.Errorf("mailbox of region %d held by two workers", b.RegionID)
						return
					}
					for _, m := range b.Msgs {
						accounted[m].Add(1)
					}
					b.FSM.held.Store(0)
					r.Release(b)
				}
			}
		})
	}

	var wg sync.WaitGroup
	for s := range senders {
		rng := rand.New(rand.NewPCG(seed, uint64(s)))
		wg.Go(func() {
			for i := range perSender {
				m := s*perSender + i
				err := r.Send(1+rng.Uint64N(regions), m)
				switch {
				case err == nil:
					sentOK[m] = true
				case !errors.Is(err, ErrRegionNotFound):
					t.Errorf("Send: %v", err)
				}
			}
		})
	}
	rng := rand.New(rand.NewPCG(seed, senders))
	wg.Go(func() {
		for range reopens {
			id := 1 + rng.Uint64N(regions)
			for _, m := range r.Close(id) {
				accounted[m].Add(1)
			}
			runtime.Gosched()
			if err := r.Register(id, new(gen)); err != nil {
				t.Errorf("Register(%d): %v", id, err)
			}
		}
	})
	wg.Wait()
	r.Stop()
	workerWG.Wait()
	for id := uint64(1); id <= regions; id++ {
		for _, m := range r.Close(id) {
			accounted[m].Add(1)
		}
	}
	lost, dup := 0, 0
	for m := range accounted {
		want := int32(0)
		if sentOK[m] {
			want = 1
		}
		switch got := accounted[m].Load(); {
		case got < want:
			lost++
		case got > want:
			dup++
		}
	}
	if lost != 0 || dup != 0 {
		t.Fatalf("%d messages lost, %d duplicated", lost, dup)
	}
}

// BenchmarkSend measures parallel Sends to 1000 regions while two workers
// drain them.
func BenchmarkSend(b *testing.B) {
	const regions = 1000
	r := New[struct{}, int, struct{}]()
	for id := uint64(1); id <= regions; id++ {
		if err := r.Register(id, struct{}{}); err != nil {
			b.Fatal(err)
		}
	}
	var workers sync.WaitGroup
	for range 2 {
		workers.Go(func() {
			var buf []Batch[struct{}, int]
			for {
				var ok bool
				buf, ok = r.Fetch(buf[:0], 64)
				if !ok {
					return
				}
				for i := range buf {
					r.Release(&buf[i])
				}
			}
		})
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := next.Add(7919) // spread goroutines over the regions
		for pb.Next() {
			id++
			if err := r.Send(1+id%regions, int(id)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	r.Stop()
	workers.Wait()
}

// BenchmarkFetchRelease measures one round trip of a mailbox through the
// ready queue (Send while held, Release re-queues, Fetch) with 1000 regions
// queued. An op is one batch.
func BenchmarkFetchRelease(b *testing.B) {
	const regions = 1000
	for _, limit := range []int{1, 16} {
		b.Run("limit="+strconv.Itoa(limit), func(b *testing.B) {
			r := New[struct{}, int, struct{}]()
			for id := uint64(1); id <= regions; id++ {
				if err := r.Register(id, struct{}{}); err != nil {
					b.Fatal(err)
				}
				if err := r.Send(id, 0); err != nil {
					b.Fatal(err)
				}
			}
			buf := make([]Batch[struct{}, int], 0, limit)
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; {
				out, _ := r.Fetch(buf[:0], limit)
				for i := range out {
					if err := r.Send(out[i].RegionID, n); err != nil {
						b.Fatal(err)
					}
					r.Release(&out[i])
				}
				n += len(out)
			}
		})
	}
}

// BenchmarkBroadcast measures one tick round over 1000 regions: Broadcast,
// then every mailbox fetched and released. An op is one round.
func BenchmarkBroadcast(b *testing.B) {
	const regions = 1000
	r := New[struct{}, int, struct{}]()
	for id := uint64(1); id <= regions; id++ {
		if err := r.Register(id, struct{}{}); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]Batch[struct{}, int], 0, regions)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.Broadcast(1)
		for n := 0; n < regions; {
			out, _ := r.Fetch(buf[:0], regions)
			for i := range out {
				r.Release(&out[i])
			}
			n += len(out)
		}
	}
}
