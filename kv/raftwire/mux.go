package raftwire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// classifyTimeout bounds how long a new connection may take to send its
// first bytes before the Mux closes it.
const classifyTimeout = 10 * time.Second

// Mux shares one listener between gRPC and raft connections. It reads the
// first bytes of each accepted connection: a raft connection (opening with
// Magic) goes to the raft handler, which owns it from then on; any other
// goes, with those bytes put back, to the listener GRPC returns.
type Mux struct {
	lis  net.Listener
	raft func(net.Conn)
	grpc *muxListener

	// mu protects pending (connections being classified) and closed.
	mu      sync.Mutex
	pending map[net.Conn]struct{}
	closed  bool
}

// NewMux returns a Mux over lis that hands raft connections, their Magic
// read, to raft, each on a goroutine of its own. Call Serve to start.
func NewMux(lis net.Listener, raft func(net.Conn)) *Mux {
	m := &Mux{lis: lis, raft: raft, pending: make(map[net.Conn]struct{})}
	m.grpc = &muxListener{addr: lis.Addr(), conns: make(chan net.Conn), closed: make(chan struct{})}
	return m
}

// GRPC returns the listener of the connections that are not raft's, for
// grpc.Server.Serve. Closing it does not close the Mux.
func (m *Mux) GRPC() net.Listener { return m.grpc }

// Serve accepts connections until Close, and then returns nil.
func (m *Mux) Serve() error {
	var pause time.Duration
	for {
		conn, err := m.lis.Accept()
		if err != nil {
			if m.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Most likely out of file descriptors: wait for some to be
			// closed, as net/http and gRPC do.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			time.Sleep(pause)
			continue
		}
		pause = 0
		if !m.track(conn) {
			conn.Close()
			return nil
		}
		go m.classify(conn)
	}
}

func (m *Mux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// track records conn as pending; false if the Mux is closed.
func (m *Mux) track(conn net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.pending[conn] = struct{}{}
	return true
}

// classify reads conn's first bytes and hands it on.
func (m *Mux) classify(conn net.Conn) {
	head := make([]byte, len(Magic))
	_ = conn.SetReadDeadline(time.Now().Add(classifyTimeout))
	n, err := io.ReadFull(conn, head)
	_ = conn.SetReadDeadline(time.Time{})
	m.mu.Lock()
	delete(m.pending, conn)
	closed := m.closed
	m.mu.Unlock()
	if closed || (err != nil && n == 0) {
		conn.Close()
		return
	}
	if err == nil && string(head) == Magic {
		m.raft(conn)
		return
	}
	// Not raft: gRPC's server answers whatever it is (an HTTP/2 preface is
	// 24 bytes, so a short read here is not gRPC and will fail there).
	m.grpc.deliver(&prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(head[:n]), conn)})
}

// Close stops accepting and closes the listener, the GRPC listener and the
// connections not yet classified. Connections handed on are their owners'
// to close. It is idempotent.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	pending := m.pending
	m.pending = nil
	m.mu.Unlock()
	err := m.lis.Close()
	m.grpc.Close()
	for conn := range pending {
		conn.Close()
	}
	return err
}

// muxListener is the net.Listener of a Mux's gRPC connections.
type muxListener struct {
	addr      net.Addr
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *muxListener) deliver(conn net.Conn) {
	select {
	case l.conns <- conn:
	case <-l.closed:
		conn.Close()
	}
}

func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case conn := <-l.conns:
		return conn, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *muxListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *muxListener) Addr() net.Addr { return l.addr }

// prefixConn is a connection whose first bytes were read already: reads
// return them first.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }
