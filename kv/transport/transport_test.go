package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"

	"github.com/regionkv/regionkv/kv/raftwire"
	"github.com/regionkv/regionkv/kv/server"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/raftstore"
)

var _ raftstore.Transport = (*Transport)(nil)

// recvStore is a server.Store that records the raft messages and snapshots
// it receives.
type recvStore struct {
	id   uint64
	msgs chan *rspb.RaftMessage
	// stopNext makes the next OnRaftMessage answer ErrStoreStopped, which
	// ends the raft connection it came on.
	stopNext atomic.Bool

	mu        sync.Mutex
	snapMsgs  []*rspb.RaftMessage
	snapData  [][]byte
	snapFail  error         // returned by ReceiveSnapshot when set
	snapBlock chan struct{} // ReceiveSnapshot waits on it when set
}

func newRecvStore(id uint64) *recvStore {
	return &recvStore{id: id, msgs: make(chan *rspb.RaftMessage, 100000)}
}

func (s *recvStore) StoreID() uint64 { return s.id }

func (s *recvStore) Execute(context.Context, *raft_cmdpb.RaftCmdRequest) (raftstore.Result, error) {
	return raftstore.Result{}, errors.New("recvStore: no commands")
}

func (s *recvStore) Propose(*raft_cmdpb.RaftCmdRequest, raftstore.Callback) error {
	return errors.New("recvStore: no commands")
}

func (s *recvStore) RegionByKey([]byte) (*metapb.Region, *metapb.Peer, error) {
	return nil, nil, &raftstore.RegionNotFoundError{}
}

func (s *recvStore) OnRaftMessage(msg *rspb.RaftMessage) error {
	if s.stopNext.CompareAndSwap(true, false) {
		return raftstore.ErrStoreStopped
	}
	s.msgs <- msg
	return nil
}

func (s *recvStore) ReceiveSnapshot(msg *rspb.RaftMessage, data io.Reader) error {
	buf, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	s.mu.Lock()
	fail, block := s.snapFail, s.snapBlock
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	if fail != nil {
		return fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapMsgs = append(s.snapMsgs, msg)
	s.snapData = append(s.snapData, buf)
	return nil
}

// storeServer is a store's server on a loopback port: gRPC and raft
// connections, as kv/node serves them.
type storeServer struct {
	store *recvStore
	addr  string
	g     *grpc.Server
	srv   *server.Server
	mux   *raftwire.Mux
}

func startServer(t *testing.T, store *recvStore, addr string) *storeServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	var err error
	// A port just released may take a moment to be reusable.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if lis, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	g := grpc.NewServer(server.GRPCServerOptions()...)
	srv := server.NewServer(store, server.Options{Logger: testLogger(t)})
	srv.Register(g)
	mux := raftwire.NewMux(lis, srv.ServeRaftConn)
	go mux.Serve()
	go g.Serve(mux.GRPC())
	s := &storeServer{store: store, addr: lis.Addr().String(), g: g, srv: srv, mux: mux}
	t.Cleanup(s.stop)
	return s
}

// stop stops the server the way a store shutting down does.
func (s *storeServer) stop() {
	s.srv.StopStreams()
	s.g.Stop()
	s.mux.Close()
}

// resolver is a Resolver over a map that tests change.
type resolver struct {
	mu    sync.Mutex
	addrs map[uint64]string
	calls int
}

func (r *resolver) set(id uint64, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.addrs == nil {
		r.addrs = make(map[uint64]string)
	}
	r.addrs[id] = addr
}

func (r *resolver) GetStore(_ context.Context, id uint64) (*metapb.Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	addr, ok := r.addrs[id]
	if !ok {
		return nil, fmt.Errorf("no store %d", id)
	}
	return &metapb.Store{Id: id, Address: addr}, nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	// A server goroutine may still log after the test ends (gRPC's Stop does
	// not wait for handlers); t.Log would then panic.
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func newTransport(t *testing.T, r Resolver, opts Options) *Transport {
	t.Helper()
	pool := NewPool(r, PoolOptions{Logger: testLogger(t), BackoffMax: 200 * time.Millisecond})
	opts.Logger = testLogger(t)
	if opts.RetryMax == 0 {
		opts.RetryMax = 200 * time.Millisecond
	}
	tr := New(pool, opts)
	t.Cleanup(func() {
		tr.Close()
		pool.Close()
	})
	return tr
}

func raftMsg(toStore, index uint64) *rspb.RaftMessage {
	return &rspb.RaftMessage{
		RegionId: 1,
		FromPeer: &metapb.Peer{Id: 10, StoreId: 1},
		ToPeer:   &metapb.Peer{Id: 10 + toStore, StoreId: toStore},
		Message:  &raftpb.Message{Type: raftpb.MsgApp, To: 10 + toStore, From: 10, Term: 1, Index: index},
	}
}

// receive waits for n messages on s and returns their indexes.
func receive(t *testing.T, s *recvStore, n int) []uint64 {
	t.Helper()
	var got []uint64
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case m := <-s.msgs:
			got = append(got, m.Message.Index)
		case <-timeout:
			t.Fatalf("received %d of %d messages", len(got), n)
		}
	}
	return got
}

func TestSendInOrder(t *testing.T) {
	s2, s3 := startServer(t, newRecvStore(2), ""), startServer(t, newRecvStore(3), "")
	var r resolver
	r.set(2, s2.addr)
	r.set(3, s3.addr)
	tr := newTransport(t, &r, Options{MaxBatchMessages: 16})

	const n = 1000
	for i := range uint64(n) {
		for _, to := range []uint64{2, 3} {
			if err := tr.Send(raftMsg(to, i)); err != nil {
				t.Fatalf("send %d to %d: %v", i, to, err)
			}
		}
		if i%50 == 0 {
			tr.Flush()
		}
	}
	tr.Flush()
	for _, s := range []*recvStore{s2.store, s3.store} {
		got := receive(t, s, n)
		for i, idx := range got {
			if idx != uint64(i) {
				t.Fatalf("store %d: message %d has index %d: out of order", s.id, i, idx)
			}
		}
	}
	st := countedStats(tr, 2*n)
	if st.MessagesSent != 2*n || st.MessagesDropped != 0 {
		t.Errorf("stats %+v, want %d sent and none dropped", st, 2*n)
	}
	// 16 messages per batch at most: at least n/16 batches per store.
	if st.BatchesSent < 2*n/16 || st.BatchesSent >= 2*n {
		t.Errorf("%d batches for %d messages with at most 16 per batch", st.BatchesSent, 2*n)
	}
	if r.calls != 2 {
		t.Errorf("resolver called %d times, want once per store (addresses are cached)", r.calls)
	}
}

func TestBatchBytesLimit(t *testing.T) {
	s2 := startServer(t, newRecvStore(2), "")
	var r resolver
	r.set(2, s2.addr)
	tr := newTransport(t, &r, Options{MaxBatchBytes: 64 << 10})
	for i := range uint64(8) {
		m := raftMsg(2, i)
		m.Message.Entries = []raftpb.Entry{{Index: i + 1, Term: 1, Data: make([]byte, 40<<10)}}
		if err := tr.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	tr.Flush()
	receive(t, s2.store, 8)
	if st := countedStats(tr, 8); st.BatchesSent != 8 {
		t.Errorf("%d batches for 8 messages of 40 KiB with 64 KiB batches, want 8", st.BatchesSent)
	}
}

// countedStats returns the transport's stats once it has counted msgs
// messages as sent or dropped, or after 10 s. The sender counts a write
// after it returns, which can be after the receiver has its messages.
func countedStats(tr *Transport, msgs uint64) Stats {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := tr.Stats()
		if st.MessagesSent+st.MessagesDropped >= msgs || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}

// sendUntil sends to store `to` until Send's error satisfies ok.
func sendUntil(t *testing.T, tr *Transport, to uint64, ok func(error) bool) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := uint64(0); ; i++ {
		err := tr.Send(raftMsg(to, i))
		tr.Flush()
		if ok(err) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("send to store %d: last error %v", to, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUnknownStoreIsUnreachable(t *testing.T) {
	tr := newTransport(t, &resolver{}, Options{})
	err := sendUntil(t, tr, 7, func(err error) bool { return err != nil })
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("send to a store the resolver does not know: %v, want ErrUnreachable", err)
	}
}

func TestDeadStoreIsUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	var r resolver
	r.set(2, addr)
	tr := newTransport(t, &r, Options{})
	err = sendUntil(t, tr, 2, func(err error) bool { return err != nil })
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("send to a dead address: %v, want ErrUnreachable", err)
	}
}

// TestReconnect: a store that stops is reported unreachable (the break is
// noticed without sending), and once it is back at a new address the
// transport finds it through the resolver and delivers again.
func TestReconnect(t *testing.T) {
	store := newRecvStore(2)
	s2 := startServer(t, store, "")
	var r resolver
	r.set(2, s2.addr)
	tr := newTransport(t, &r, Options{})
	if err := tr.Send(raftMsg(2, 1)); err != nil {
		t.Fatal(err)
	}
	tr.Flush()
	receive(t, store, 1)

	s2.stop()
	// Without sending anything, the destination learns the stream ended.
	deadline := time.Now().Add(10 * time.Second)
	for !tr.isDown(2) {
		if time.Now().After(deadline) {
			t.Fatal("the stream's end was not noticed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tr.Send(raftMsg(2, 2)); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("send to a stopped store: %v, want ErrUnreachable", err)
	}

	s2 = startServer(t, store, "") // a new port: the address must be resolved again
	r.set(2, s2.addr)
	sendUntil(t, tr, 2, func(err error) bool { return err == nil })
	tr.Flush()
	receive(t, store, 1)
	if st := tr.Stats(); st.Reconnects == 0 {
		t.Errorf("stats %+v: no reconnect counted", st)
	}
}

// TestWrongStoreAtAddress: a store found at another store's address refuses
// the connection; the transport reports the destination unreachable and
// looks its address up again.
func TestWrongStoreAtAddress(t *testing.T) {
	s2, s3 := startServer(t, newRecvStore(2), ""), startServer(t, newRecvStore(3), "")
	var r resolver
	r.set(2, s3.addr) // store 3 listens there
	tr := newTransport(t, &r, Options{})
	err := sendUntil(t, tr, 2, func(err error) bool { return err != nil })
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "another store") {
		t.Fatalf("send to store 2 at store 3's address: %v, want ErrUnreachable (another store)", err)
	}
	r.set(2, s2.addr)
	sendUntil(t, tr, 2, func(err error) bool { return err == nil })
	tr.Flush()
	receive(t, s2.store, 1)
	if n := len(s3.store.msgs); n != 0 {
		t.Errorf("store 3 received %d messages meant for store 2", n)
	}
}

// TestStalledStore: a store that accepts the connection but reads nothing
// is reported unreachable once a write has waited WriteTimeout.
func TestStalledStore(t *testing.T) {
	var r resolver
	r.set(2, startStalledServer(t))
	tr := newTransport(t, &r, Options{WriteTimeout: 200 * time.Millisecond})
	// The socket buffers take some megabytes; then a write blocks.
	deadline := time.Now().Add(20 * time.Second)
	for i := uint64(0); ; i++ {
		err := tr.Send(big(i))
		tr.Flush()
		if errors.Is(err, ErrUnreachable) {
			break
		}
		if err != nil && !errors.Is(err, ErrQueueFull) {
			t.Fatalf("send %d: %v", i, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("a store that reads nothing was not reported unreachable; last error %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := tr.Stats(); st.MessagesDropped == 0 {
		t.Errorf("stats %+v: the messages lost with the connection were not counted", st)
	}
}

// startStalledServer starts a store that accepts raft connections and then
// reads nothing, and returns its address.
func startStalledServer(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var stalled []net.Conn
	mux := raftwire.NewMux(lis, func(conn net.Conn) {
		if _, err := raftwire.ReadHelloStore(conn); err == nil {
			conn.Write([]byte{raftwire.StatusOK})
		}
		mu.Lock()
		stalled = append(stalled, conn) // and never read
		mu.Unlock()
	})
	go mux.Serve()
	t.Cleanup(func() {
		mux.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range stalled {
			conn.Close()
		}
	})
	return lis.Addr().String()
}

// big is a raft message to store 2 with a 1 MiB entry.
func big(i uint64) *rspb.RaftMessage {
	m := raftMsg(2, i)
	m.Message.Entries = []raftpb.Entry{{Index: i + 1, Term: 1, Data: make([]byte, 1<<20)}}
	return m
}

// TestCloseDuringStalledWrite: Close ends a write that a stalled store
// blocks, rather than waiting for WriteTimeout.
func TestCloseDuringStalledWrite(t *testing.T) {
	var r resolver
	r.set(2, startStalledServer(t))
	pool := NewPool(&r, PoolOptions{Logger: testLogger(t)})
	defer pool.Close()
	tr := New(pool, Options{Logger: testLogger(t), WriteTimeout: time.Hour, QueueSize: 100})
	// More than the loopback sockets hold: the write blocks.
	for i := range uint64(40) {
		if err := tr.Send(big(i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	tr.Flush()
	time.Sleep(500 * time.Millisecond)
	closed := make(chan struct{})
	go func() {
		tr.Close()
		close(closed)
	}()
	// Without Close ending it, the write would fail on its own only after
	// the TCP user timeout (13 s) or WriteTimeout.
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for a write the stalled store blocks")
	}
}

// TestLargeMessages: messages larger than one write's buffer go through,
// in order with the small ones around them.
func TestLargeMessages(t *testing.T) {
	s2 := startServer(t, newRecvStore(2), "")
	var r resolver
	r.set(2, s2.addr)
	tr := newTransport(t, &r, Options{})
	for i := range uint64(12) {
		m := raftMsg(2, i)
		if i%3 == 1 {
			m.Message.Entries = []raftpb.Entry{{Index: i + 1, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, 3<<20)}}
		}
		if err := tr.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	tr.Flush()
	for i, idx := range receive(t, s2.store, 12) {
		if idx != uint64(i) {
			t.Fatalf("message %d has index %d: out of order", i, idx)
		}
	}
}

// TestEndedConnectionKeepsPoolConn: a raft connection the store ends is
// dialed again; the pool's gRPC connection to the store (snapshots,
// forwarding) is kept, and so is the cached address.
func TestEndedConnectionKeepsPoolConn(t *testing.T) {
	s2 := startServer(t, newRecvStore(2), "")
	var r resolver
	r.set(2, s2.addr)
	tr := newTransport(t, &r, Options{RetryMin: 10 * time.Millisecond})
	sendUntil(t, tr, 2, func(err error) bool { return err == nil })
	tr.Flush()
	receive(t, s2.store, 1)
	before, err := tr.pool.Conn(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}

	s2.store.stopNext.Store(true)
	if err := tr.Send(raftMsg(2, 1)); err != nil {
		t.Fatal(err)
	}
	tr.Flush()
	// That message ended the connection (and whatever followed it on the
	// way); messages go on a new one.
	for deadline := time.Now().Add(10 * time.Second); tr.Stats().Reconnects == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no new connection after the store ended one")
		}
	}
	sendUntil(t, tr, 2, func(err error) bool { return err == nil })
	tr.Flush()
	receive(t, s2.store, 1)
	after, err := tr.pool.Conn(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Error("the pool's gRPC connection was replaced after a raft connection ended")
	}
	if r.calls != 1 {
		t.Errorf("resolver called %d times, want once", r.calls)
	}
}

func (t *Transport) isDown(storeID uint64) bool {
	t.mu.RLock()
	d := t.dests[storeID]
	t.mu.RUnlock()
	if d == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.down != nil
}

func TestQueueFull(t *testing.T) {
	// The resolver blocks, so nothing leaves the queue.
	block := make(chan struct{})
	defer close(block)
	r := resolverFunc(func(ctx context.Context, id uint64) (*metapb.Store, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, errors.New("blocked")
	})
	tr := newTransport(t, r, Options{QueueSize: 8, MaxBatchMessages: 100})
	for i := range uint64(8) {
		if err := tr.Send(raftMsg(2, i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := tr.Send(raftMsg(2, 8)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("ninth send into a queue of 8: %v, want ErrQueueFull", err)
	}
	if err := tr.Send(&rspb.RaftMessage{}); err == nil {
		t.Fatal("send without a destination store succeeded")
	}
}

type resolverFunc func(ctx context.Context, id uint64) (*metapb.Store, error)

func (f resolverFunc) GetStore(ctx context.Context, id uint64) (*metapb.Store, error) {
	return f(ctx, id)
}

func TestIdleUnreachableStoreIsForgotten(t *testing.T) {
	tr := newTransport(t, &resolver{}, Options{IdleTimeout: 100 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	sendUntil(t, tr, 9, func(err error) bool { return err != nil })
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr.mu.RLock()
		n := len(tr.dests)
		tr.mu.RUnlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("an unreachable, unused destination was kept")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func snapMsg(toStore uint64) *rspb.RaftMessage {
	m := raftMsg(toStore, 0)
	m.Message = &raftpb.Message{Type: raftpb.MsgSnap, To: 10 + toStore, From: 10, Term: 2,
		Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 20, Term: 2}, Data: []byte("meta")}}
	return m
}

func TestSendSnapshot(t *testing.T) {
	store := newRecvStore(2)
	s2 := startServer(t, store, "")
	var r resolver
	r.set(2, s2.addr)
	tr := newTransport(t, &r, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	data := make([]byte, 3<<20+12345) // several chunks and a partial one
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := tr.SendSnapshot(ctx, snapMsg(2), bytes.NewReader(data)); err != nil {
		t.Fatalf("send snapshot: %v", err)
	}
	if err := tr.SendSnapshot(ctx, snapMsg(2), bytes.NewReader(nil)); err != nil {
		t.Fatalf("send an empty snapshot: %v", err)
	}
	store.mu.Lock()
	if len(store.snapData) != 2 || !bytes.Equal(store.snapData[0], data) || len(store.snapData[1]) != 0 {
		t.Errorf("received %d snapshots; the first has %d bytes, want %d", len(store.snapData), len(store.snapData[0]), len(data))
	}
	if m := store.snapMsgs[0]; m.Message.Type != raftpb.MsgSnap || m.Message.Snapshot.Metadata.Index != 20 {
		t.Errorf("received message %v", m.Message)
	}
	store.mu.Unlock()
	if st := tr.Stats(); st.SnapshotsSent != 2 || st.SnapshotBytes != uint64(len(data)) {
		t.Errorf("stats %+v", st)
	}

	// The receiver's refusal comes back.
	store.mu.Lock()
	store.snapFail = errors.New("checksum mismatch")
	store.mu.Unlock()
	if err := tr.SendSnapshot(ctx, snapMsg(2), bytes.NewReader(data)); err == nil {
		t.Error("a snapshot the receiver refused was reported sent")
	}

	// A reader that fails ends the transfer.
	rerr := errors.New("disk on fire")
	if err := tr.SendSnapshot(ctx, snapMsg(2), io.MultiReader(bytes.NewReader(data[:100]), errReader{rerr})); !errors.Is(err, rerr) {
		t.Errorf("snapshot with a failing reader: %v, want %v", err, rerr)
	}

	// ctx bounds the wait for the receiver.
	store.mu.Lock()
	store.snapFail, store.snapBlock = nil, make(chan struct{})
	store.mu.Unlock()
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := tr.SendSnapshot(short, snapMsg(2), bytes.NewReader(data)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("snapshot past its deadline: %v, want DeadlineExceeded", err)
	}
	close(store.snapBlock)

	// An unknown store fails at once.
	if err := tr.SendSnapshot(ctx, snapMsg(5), bytes.NewReader(data)); err == nil {
		t.Error("a snapshot to an unknown store was reported sent")
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestClose(t *testing.T) {
	s2 := startServer(t, newRecvStore(2), "")
	var r resolver
	r.set(2, s2.addr)
	tr := newTransport(t, &r, Options{})
	if err := tr.Send(raftMsg(2, 1)); err != nil {
		t.Fatal(err)
	}
	tr.Flush()
	receive(t, s2.store, 1)
	tr.Close()
	if err := tr.Send(raftMsg(2, 2)); !errors.Is(err, ErrClosed) {
		t.Errorf("send after close: %v, want ErrClosed", err)
	}
}

// TestLinger: a message that no Flush follows (a store liveness ping sent
// from the store ticker) still goes.
func TestLinger(t *testing.T) {
	s2 := startServer(t, newRecvStore(2), "")
	var r resolver
	r.set(2, s2.addr)
	tr := newTransport(t, &r, Options{Linger: time.Millisecond})
	for i := range uint64(3) {
		if err := tr.Send(raftMsg(2, i)); err != nil {
			t.Fatal(err)
		}
		receive(t, s2.store, 1) // no Flush
	}
}
