package harness

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_serverpb"
)

// sink collects the messages delivered to one store.
type sink struct {
	mu   sync.Mutex
	msgs []*raft_serverpb.RaftMessage
}

func (s *sink) deliver(m *raft_serverpb.RaftMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
}

func (s *sink) messages() []*raft_serverpb.RaftMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// newTestNetwork returns a network with a sink attached for each store; the
// network is closed when the test ends.
func newTestNetwork(t testing.TB, seed int64, stores ...uint64) (*Network, map[uint64]*sink) {
	t.Helper()
	n := NewNetwork(seed)
	t.Cleanup(n.Close)
	sinks := make(map[uint64]*sink)
	for _, id := range stores {
		s := &sink{}
		sinks[id] = s
		n.Attach(id, s.deliver)
	}
	return n, sinks
}

// testMessage returns a MsgApp from store from to store to, tagged with index.
func testMessage(from, to, index uint64) *raft_serverpb.RaftMessage {
	return &raft_serverpb.RaftMessage{
		RegionId:    1,
		FromPeer:    &metapb.Peer{Id: from * 10, StoreId: from},
		ToPeer:      &metapb.Peer{Id: to * 10, StoreId: to},
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1},
		Message: &raftpb.Message{
			Type:    raftpb.MsgApp,
			From:    from * 10,
			To:      to * 10,
			Term:    1,
			Index:   index,
			Entries: []raftpb.Entry{{Term: 1, Index: index + 1, Data: []byte("payload")}},
		},
		StartKey: []byte("a"),
		EndKey:   []byte("z"),
	}
}

// mustSend sends a message from store from to store to through n.
func mustSend(t testing.TB, n *Network, from, to, index uint64) {
	t.Helper()
	if err := n.Transport(from).Send(testMessage(from, to, index)); err != nil {
		t.Fatalf("send %d->%d: %v", from, to, err)
	}
}

// waitSettled polls until every sent message was delivered or dropped.
func waitSettled(t testing.TB, n *Network) NetworkStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := n.Stats()
		if s.Delivered+s.Dropped == s.Sent {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("network did not settle: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
}

// indexes returns the raft Index of each message, in delivery order.
func indexes(msgs []*raft_serverpb.RaftMessage) []uint64 {
	out := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, m.GetMessage().Index)
	}
	return out
}

func TestNetworkDeliversACopy(t *testing.T) {
	n, sinks := newTestNetwork(t, 1, 1, 2)
	msg := testMessage(1, 2, 7)
	want := testMessage(1, 2, 7)
	if err := n.Transport(1).Send(msg); err != nil {
		t.Fatal(err)
	}
	// Scribble over everything the sender still holds, including the
	// backing arrays of byte slices.
	msg.Message.Index = 99
	msg.Message.Entries[0].Data[0] = 'X'
	msg.FromPeer.StoreId = 42
	msg.StartKey[0] = 'Q'
	waitSettled(t, n)

	got := sinks[2].messages()
	if len(got) != 1 {
		t.Fatalf("store 2 got %d messages, want 1", len(got))
	}
	if got[0] == msg {
		t.Fatal("delivered the sender's pointer")
	}
	if got[0].String() != want.String() {
		t.Fatalf("delivered %v, want %v", got[0], want)
	}
	if s := n.Stats(); s != (NetworkStats{Sent: 1, Delivered: 1}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestNetworkSendNil(t *testing.T) {
	n, _ := newTestNetwork(t, 1, 1)
	if err := n.Transport(1).Send(nil); err == nil {
		t.Fatal("Send(nil) succeeded")
	}
	n.Transport(1).Flush()
}

func TestNetworkPreservesOrderPerSender(t *testing.T) {
	n, sinks := newTestNetwork(t, 1, 1, 2, 3)
	const count = 1000
	var wg sync.WaitGroup
	for _, from := range []uint64{1, 3} {
		wg.Go(func() {
			for i := range uint64(count) {
				// Encode the sender in the index to split the stream.
				mustSend(t, n, from, 2, from*count+i)
			}
		})
	}
	wg.Wait()
	waitSettled(t, n)
	perSender := make(map[uint64][]uint64)
	for _, idx := range indexes(sinks[2].messages()) {
		perSender[idx/count] = append(perSender[idx/count], idx%count)
	}
	for _, from := range []uint64{1, 3} {
		got := perSender[from]
		if len(got) != count || !slices.IsSorted(got) {
			t.Errorf("from store %d: %d messages, in order %v", from, len(got), slices.IsSorted(got))
		}
	}
}

func TestNetworkFilters(t *testing.T) {
	stores := []uint64{1, 2, 3}
	all := []string{"1->2", "1->3", "2->1", "2->3", "3->1", "3->2"}
	tests := []struct {
		name  string
		setup func(n *Network)
		want  []string // the links that deliver
	}{
		{name: "none", setup: func(n *Network) {}, want: all},
		{
			name:  "partition",
			setup: func(n *Network) { n.Partition([]uint64{1, 2}, []uint64{3}) },
			want:  []string{"1->2", "2->1"},
		},
		{
			name:  "store in no group is isolated",
			setup: func(n *Network) { n.Partition([]uint64{1}, []uint64{2}) },
			want:  nil,
		},
		{
			name:  "partition with no groups isolates all",
			setup: func(n *Network) { n.Partition() },
			want:  nil,
		},
		{
			name:  "bridge",
			setup: func(n *Network) { n.Partition([]uint64{1, 2}, []uint64{2, 3}) },
			want:  []string{"1->2", "2->1", "2->3", "3->2"},
		},
		{
			name: "later partition replaces",
			setup: func(n *Network) {
				n.Partition([]uint64{1}, []uint64{2, 3})
				n.Partition([]uint64{1, 3}, []uint64{2})
			},
			want: []string{"1->3", "3->1"},
		},
		{
			name:  "isolate",
			setup: func(n *Network) { n.Isolate(3) },
			want:  []string{"1->2", "2->1"},
		},
		{
			name:  "cut is one-way",
			setup: func(n *Network) { n.Cut(1, 2) },
			want:  []string{"1->3", "2->1", "2->3", "3->1", "3->2"},
		},
		{
			name: "heal",
			setup: func(n *Network) {
				n.Partition([]uint64{1}, []uint64{2})
				n.Isolate(1)
				n.Cut(2, 3)
				n.Heal()
			},
			want: all,
		},
		{
			name: "custom filter",
			setup: func(n *Network) {
				n.AddFilter(func(m *raft_serverpb.RaftMessage) bool { return m.GetFromPeer().GetStoreId() != 1 })
			},
			want: []string{"2->1", "2->3", "3->1", "3->2"},
		},
		{
			name: "heal keeps custom filter",
			setup: func(n *Network) {
				n.AddFilter(func(m *raft_serverpb.RaftMessage) bool { return m.GetToPeer().GetStoreId() != 3 })
				n.Isolate(1)
				n.Heal()
			},
			want: []string{"1->2", "2->1", "3->1", "3->2"},
		},
		{
			name: "clear filters",
			setup: func(n *Network) {
				n.AddFilter(func(*raft_serverpb.RaftMessage) bool { return false })
				n.Partition([]uint64{1})
				n.Cut(3, 2)
				n.Drop(1)
				n.ClearFilters()
			},
			want: all,
		},
		{
			name:  "filters combine",
			setup: func(n *Network) { n.Partition([]uint64{1, 2, 3}); n.Cut(1, 2); n.Isolate(3) },
			want:  []string{"2->1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, sinks := newTestNetwork(t, 1, stores...)
			tt.setup(n)
			for _, from := range stores {
				for _, to := range stores {
					if from != to {
						mustSend(t, n, from, to, 0)
					}
				}
			}
			waitSettled(t, n)
			var got []string
			for _, to := range stores {
				for _, m := range sinks[to].messages() {
					got = append(got, fmt.Sprintf("%d->%d", m.GetFromPeer().GetStoreId(), to))
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("delivered %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNetworkFilterSeesPrivateCopy(t *testing.T) {
	n, sinks := newTestNetwork(t, 1, 1, 2)
	n.AddFilter(func(m *raft_serverpb.RaftMessage) bool {
		m.Message.Commit = 99 // inject a fault into the copy
		return true
	})
	msg := testMessage(1, 2, 0)
	if err := n.Transport(1).Send(msg); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, n)
	if msg.Message.Commit != 0 {
		t.Errorf("filter changed the sender's message: commit %d", msg.Message.Commit)
	}
	if got := sinks[2].messages(); len(got) != 1 || got[0].Message.Commit != 99 {
		t.Errorf("delivered %v, want one message with commit 99", got)
	}
}

func TestNetworkDrop(t *testing.T) {
	tests := []struct {
		name          string
		p             float64
		wantDelivered uint64
	}{
		{name: "all", p: 1, wantDelivered: 0},
		{name: "above one", p: 7, wantDelivered: 0},
		{name: "none", p: 0, wantDelivered: 200},
		{name: "below zero", p: -1, wantDelivered: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, _ := newTestNetwork(t, 1, 1, 2)
			n.Drop(tt.p)
			for i := range uint64(200) {
				mustSend(t, n, 1, 2, i)
			}
			s := waitSettled(t, n)
			if s.Delivered != tt.wantDelivered || s.Dropped != 200-tt.wantDelivered {
				t.Errorf("stats %+v, want %d delivered", s, tt.wantDelivered)
			}
		})
	}
}

func TestNetworkDropIsReproducible(t *testing.T) {
	const count = 400
	pattern := func(seed int64) []uint64 {
		n, sinks := newTestNetwork(t, seed, 1, 2)
		n.Drop(0.5)
		n.Delay(0) // explicitly off: delivery order is send order
		for i := range uint64(count) {
			mustSend(t, n, 1, 2, i)
		}
		waitSettled(t, n)
		return indexes(sinks[2].messages())
	}
	a, b, c := pattern(42), pattern(42), pattern(43)
	if !slices.Equal(a, b) {
		t.Errorf("seed 42 gave two drop patterns:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 42 and 43 gave the same drop pattern %v", a)
	}
	if len(a) < count/4 || len(a) > 3*count/4 {
		t.Errorf("Drop(0.5) delivered %d of %d", len(a), count)
	}
}

func TestNetworkDelayDeliversEverything(t *testing.T) {
	n, sinks := newTestNetwork(t, 7, 1, 2, 3)
	n.Delay(10 * time.Millisecond)
	const count = 300
	for i := range uint64(count) {
		mustSend(t, n, 1, 2, i)
		mustSend(t, n, 3, 2, count+i)
	}
	s := waitSettled(t, n)
	if s.Delivered != 2*count || s.Dropped != 0 {
		t.Fatalf("stats %+v, want %d delivered", s, 2*count)
	}
	got := indexes(sinks[2].messages())
	if slices.IsSorted(got) {
		t.Logf("no reordering observed in %d delayed messages", len(got))
	}
	slices.Sort(got)
	for i, idx := range got {
		if idx != uint64(i) {
			t.Fatalf("delivered indexes %v, want 0..%d each once", got, 2*count-1)
		}
	}
}

func TestNetworkDetach(t *testing.T) {
	n, sinks := newTestNetwork(t, 1, 1, 2)
	n.Detach(2)
	mustSend(t, n, 1, 2, 1)
	mustSend(t, n, 1, 9, 2) // never attached
	n.Detach(9)             // detaching an unknown store is harmless
	if s := waitSettled(t, n); s.Dropped != 2 || s.Delivered != 0 {
		t.Fatalf("stats %+v, want 2 dropped", s)
	}

	restarted := &sink{}
	n.Attach(2, restarted.deliver)
	mustSend(t, n, 1, 2, 3)
	waitSettled(t, n)
	if got := indexes(sinks[2].messages()); len(got) != 0 {
		t.Errorf("detached store got %v", got)
	}
	if got := indexes(restarted.messages()); !slices.Equal(got, []uint64{3}) {
		t.Errorf("reattached store got %v, want [3]", got)
	}

	// Attach with a nil deliver only detaches.
	n.Attach(2, nil)
	mustSend(t, n, 1, 2, 4)
	if s := waitSettled(t, n); s.Dropped != 3 {
		t.Errorf("stats %+v, want 3 dropped", s)
	}
}

func TestNetworkDetachWaitsForDelivery(t *testing.T) {
	n := NewNetwork(1)
	t.Cleanup(n.Close)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	n.Attach(2, func(*raft_serverpb.RaftMessage) {
		entered <- struct{}{}
		<-release
	})
	mustSend(t, n, 1, 2, 1)
	mustSend(t, n, 1, 2, 2) // queued behind the blocked delivery
	<-entered

	detached := make(chan struct{})
	go func() {
		n.Detach(2)
		close(detached)
	}()
	select {
	case <-detached:
		t.Fatal("Detach returned while a delivery was in progress")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-detached
	s := n.Stats()
	if s.Delivered != 1 || s.Dropped != 1 {
		t.Errorf("stats %+v, want 1 delivered and the queued one dropped", s)
	}
	select {
	case <-entered:
		t.Error("delivered after Detach")
	default:
	}
}

func TestNetworkClose(t *testing.T) {
	n := NewNetwork(1)
	s := &sink{}
	n.Attach(2, s.deliver)
	n.Delay(time.Hour)
	for i := range uint64(10) {
		mustSend(t, n, 1, 2, i)
	}
	done := make(chan struct{})
	go func() {
		n.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	n.Close() // idempotent

	mustSend(t, n, 1, 2, 10)
	n.Attach(3, s.deliver) // ignored after Close
	mustSend(t, n, 1, 3, 11)
	if st := n.Stats(); st != (NetworkStats{Sent: 12, Dropped: 12}) {
		t.Errorf("stats %+v, want all 12 dropped", st)
	}
	if got := s.messages(); len(got) != 0 {
		t.Errorf("delivered %v after Close", indexes(got))
	}
}

// TestNetworkConcurrentUse is mainly for the race detector: senders, filter
// changes and restarts all at once, then exact accounting after Close.
func TestNetworkConcurrentUse(t *testing.T) {
	const seed = 5
	t.Logf("seed %d", seed)
	n := NewNetwork(seed)
	stores := []uint64{1, 2, 3, 4}
	for _, id := range stores {
		n.Attach(id, func(*raft_serverpb.RaftMessage) {})
	}
	stop := make(chan struct{})
	var chaos sync.WaitGroup
	chaos.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			switch i % 8 {
			case 0:
				n.Partition([]uint64{1, 2}, []uint64{3, 4})
			case 1:
				n.Isolate(uint64(i%4 + 1))
			case 2:
				n.Cut(1, 3)
			case 3:
				n.Drop(0.3)
			case 4:
				n.Delay(time.Millisecond)
			case 5:
				n.Detach(4)
				n.Attach(4, func(*raft_serverpb.RaftMessage) {})
			case 6:
				n.Heal()
			case 7:
				n.ClearFilters()
			}
			_ = n.Stats()
		}
	})
	var senders sync.WaitGroup
	for _, from := range stores {
		senders.Go(func() {
			tr := n.Transport(from)
			for i := range uint64(500) {
				to := stores[int(i)%len(stores)]
				if err := tr.Send(testMessage(from, to, i)); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		})
	}
	senders.Wait()
	close(stop)
	chaos.Wait()
	n.Close()
	s := n.Stats()
	if s.Sent != 2000 || s.Delivered+s.Dropped != s.Sent {
		t.Errorf("stats %+v: want 2000 sent, all delivered or dropped", s)
	}
}
