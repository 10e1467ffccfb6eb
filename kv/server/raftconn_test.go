package server

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/raftwire"
	"github.com/regionkv/regionkv/proto/raft_serverpb"
)

// serveRaftConns serves srv's raft connections on a loopback port, as
// kv/node does, and returns the address.
func serveRaftConns(t *testing.T, srv *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := raftwire.NewMux(lis, srv.ServeRaftConn)
	done := make(chan error, 1)
	go func() { done <- mux.Serve() }()
	t.Cleanup(func() {
		srv.StopStreams()
		mux.Close()
		if err := <-done; err != nil {
			t.Errorf("mux: %v", err)
		}
	})
	return lis.Addr().String()
}

// dialRaft opens a raft connection to the store at addr that means store
// toStore, and returns it with the store's answer.
func dialRaft(t *testing.T, addr string, toStore uint64) (net.Conn, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(raftwire.AppendHello(nil, toStore)); err != nil {
		t.Fatal(err)
	}
	return conn, raftwire.ReadStatus(conn)
}

func writeBatches(t *testing.T, conn net.Conn, batches ...*raft_serverpb.RaftMessageBatch) {
	t.Helper()
	var buf []byte
	for _, b := range batches {
		var err error
		if buf, err = raftwire.AppendFrame(buf, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write(buf); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// waitRaftMessages waits until the store has received n raft messages.
func waitRaftMessages(t *testing.T, s *fakeStore, n int) []*raft_serverpb.RaftMessage {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got := s.raftMessages()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
	}
}

func TestRaftConn(t *testing.T) {
	store := newFakeStore(t)
	srv := NewServer(store, Options{Logger: testLogger(t)})
	addr := serveRaftConns(t, srv)

	conn, err := dialRaft(t, addr, fakeStoreID)
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	writeBatches(t, conn,
		&raft_serverpb.RaftMessageBatch{Msgs: []*raft_serverpb.RaftMessage{raftMsg(1, raftpb.MsgApp), raftMsg(0, raftpb.MsgApp), raftMsg(2, raftpb.MsgHeartbeat)}},
		&raft_serverpb.RaftMessageBatch{},
		&raft_serverpb.RaftMessageBatch{Msgs: []*raft_serverpb.RaftMessage{raftMsg(3, raftpb.MsgVote)}})
	// The message of region 0 is rejected by the store and skipped.
	want := []*raft_serverpb.RaftMessage{raftMsg(1, raftpb.MsgApp), raftMsg(2, raftpb.MsgHeartbeat), raftMsg(3, raftpb.MsgVote)}
	checkRaftMessages(t, waitRaftMessages(t, store, len(want)), want)
	if st := srv.RaftStats(); st.MessagesReceived != 3 || st.Connections != 1 || st.BadConnections != 0 {
		t.Errorf("RaftStats = %+v, want 3 received on 1 connection", st)
	}
	// The store closes a connection whose dialer closes it.
	conn.(*net.TCPConn).CloseWrite()
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read after the dialer's close: %v, want EOF", err)
	}

	t.Run("wrong store", func(t *testing.T) {
		_, err := dialRaft(t, addr, fakeStoreID+1)
		var se *raftwire.StatusError
		if !errors.As(err, &se) || se.Status != raftwire.StatusWrongStore {
			t.Errorf("hello for another store: %v, want StatusWrongStore", err)
		}
	})

	t.Run("bad frames", func(t *testing.T) {
		for name, frame := range map[string][]byte{
			"too large": binary.BigEndian.AppendUint32(nil, raftwire.MaxFrameSize+1),
			"garbage":   append(binary.BigEndian.AppendUint32(nil, 3), 0xff, 0xff, 0xff),
		} {
			conn, err := dialRaft(t, addr, fakeStoreID)
			if err != nil {
				t.Fatalf("%s: hello: %v", name, err)
			}
			if _, err := conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("%s: read: %v, want EOF (the store closes the connection)", name, err)
			}
		}
	})

	if st := srv.RaftStats(); st.BadConnections != 3 {
		t.Errorf("RaftStats = %+v, want 3 bad connections (another store's id, two bad frames)", st)
	}

	t.Run("store stopped", func(t *testing.T) {
		store.setStopped(true)
		defer store.setStopped(false)
		conn, err := dialRaft(t, addr, fakeStoreID)
		if err != nil {
			t.Fatalf("hello: %v", err)
		}
		writeBatches(t, conn, &raft_serverpb.RaftMessageBatch{Msgs: want[:1]})
		var se *raftwire.StatusError
		if err := raftwire.ReadStatus(conn); !errors.As(err, &se) || se.Status != raftwire.StatusStopping {
			t.Errorf("after a message to a stopped store: %v, want StatusStopping", err)
		}
	})

	t.Run("streams stopped", func(t *testing.T) {
		idle, err := dialRaft(t, addr, fakeStoreID)
		if err != nil {
			t.Fatalf("hello: %v", err)
		}
		// An idle connection ends when the server stops streams, and new
		// ones are refused.
		srv.StopStreams()
		srv.StopStreams()
		var se *raftwire.StatusError
		if err := raftwire.ReadStatus(idle); !errors.As(err, &se) || se.Status != raftwire.StatusStopping {
			t.Errorf("idle connection after StopStreams: %v, want StatusStopping", err)
		}
		if _, err := idle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("idle connection after its status: %v, want EOF", err)
		}
		if _, err := dialRaft(t, addr, fakeStoreID); !errors.As(err, &se) || se.Status != raftwire.StatusStopping {
			t.Errorf("new connection after StopStreams: %v, want StatusStopping", err)
		}
	})
}
