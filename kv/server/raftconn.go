package server

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/regionkv/regionkv/kv/raftwire"
	"github.com/regionkv/regionkv/raftstore"
)

// raftHelloTimeout bounds the wait for a raft connection's hello, and
// raftStatusTimeout the write of a status byte.
const (
	raftHelloTimeout  = 10 * time.Second
	raftStatusTimeout = time.Second
)

// ServeRaftConn serves a raft connection from another store's transport,
// whose raftwire.Magic a raftwire.Mux has read, and closes it when done. It
// checks that the dialer means this store, then reads the connection's
// batches and hands their messages to the raftstore on this goroutine, in
// order, as Raft does for a gRPC stream. It returns when the dialer closes
// the connection, when it breaks or sends a bad frame, or when the store
// stops or StopStreams is called.
func (s *Server) ServeRaftConn(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(raftHelloTimeout))
	toStore, err := raftwire.ReadHelloStore(conn)
	if err != nil {
		s.raftBad.Add(1)
		s.log.Debug("raft connection without a hello", "remote", conn.RemoteAddr(), "err", err)
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	if toStore != s.store.StoreID() {
		s.raftBad.Add(1)
		s.log.Warn("raft connection for another store", "to_store", toStore, "remote", conn.RemoteAddr())
		refuseRaftConn(conn, raftwire.StatusWrongStore)
		return
	}
	if !s.trackRaftConn(conn) {
		refuseRaftConn(conn, raftwire.StatusStopping)
		return
	}
	defer func() {
		if s.untrackRaftConn(conn) {
			conn.Close()
		}
	}()
	_ = conn.SetWriteDeadline(time.Now().Add(raftStatusTimeout))
	if _, err := conn.Write([]byte{raftwire.StatusOK}); err != nil {
		return
	}
	r := raftwire.NewReader(conn)
	for {
		batch, err := r.Next()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
			case errors.Is(err, raftwire.ErrBadFrame):
				s.raftBad.Add(1)
				s.log.Warn("raft connection sent a bad frame", "remote", conn.RemoteAddr(), "err", err)
			default:
				s.log.Debug("raft connection broke", "remote", conn.RemoteAddr(), "err", err)
			}
			return
		}
		if err := s.deliverRaft(batch, conn.RemoteAddr()); errors.Is(err, raftstore.ErrStoreStopped) {
			if s.untrackRaftConn(conn) {
				refuseRaftConn(conn, raftwire.StatusStopping)
			}
			return
		}
	}
}

// trackRaftConn records an open raft connection for StopStreams; false if
// streams are stopped.
func (s *Server) trackRaftConn(conn net.Conn) bool {
	s.raftMu.Lock()
	defer s.raftMu.Unlock()
	if s.raftConns == nil {
		return false
	}
	s.raftConns[conn] = struct{}{}
	return true
}

// untrackRaftConn forgets conn. It returns false if StopStreams took it
// first (StopStreams closes it then).
func (s *Server) untrackRaftConn(conn net.Conn) bool {
	s.raftMu.Lock()
	defer s.raftMu.Unlock()
	_, ok := s.raftConns[conn]
	delete(s.raftConns, conn)
	return ok
}

// refuseRaftConn tells the dialer why and closes conn.
func refuseRaftConn(conn net.Conn, status byte) {
	_ = conn.SetWriteDeadline(time.Now().Add(raftStatusTimeout))
	_, _ = conn.Write([]byte{status})
	conn.Close()
}

// RaftStats counts the raft messages and connections this server received.
type RaftStats struct {
	MessagesReceived uint64 // raft messages handed to the store (connections and streams)
	Connections      int    // raft connections open now
	BadConnections   uint64 // refused or ended for a bad hello (or another store's) or a bad frame
}

// RaftStats returns the server's raft counters.
func (s *Server) RaftStats() RaftStats {
	s.raftMu.Lock()
	conns := len(s.raftConns)
	s.raftMu.Unlock()
	return RaftStats{MessagesReceived: s.raftReceived.Load(), Connections: conns, BadConnections: s.raftBad.Load()}
}
