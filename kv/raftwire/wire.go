// Package raftwire is how raft messages travel between stores: a plain TCP
// connection per sending and receiving store, on the receiving store's one
// port, which it shares with gRPC through a Mux.
//
// raft messages are the store's most frequent traffic: a busy store sends
// and receives thousands of small batches a second. gRPC costs each batch
// HTTP/2 framing and flow control and two goroutine hand-offs on each side
// (the caller's to gRPC's writer, gRPC's reader to the stream's handler); on
// this connection a batch is one write by the sending goroutine and one read
// by the receiving one, which hands its messages to the raftstore itself.
// etcd's peers, too, exchange raft messages over plain HTTP streams rather
// than gRPC. Snapshots, rare and large, still go over gRPC (Kv.Snapshot).
//
// The protocol:
//
//	dialer → store:  Magic, then the store id it means to reach (8 bytes, big-endian)
//	store → dialer:  one status byte: StatusOK, StatusWrongStore or StatusStopping
//	dialer → store:  frames, each a 4-byte big-endian length and a marshalled RaftMessageBatch
//	store → dialer:  nothing more, except StatusStopping just before the store closes it
//
// Delivery is best effort, as raft expects: the connection just ends when
// either side fails, and the dialer reconnects.
package raftwire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// Magic opens every raft connection; it tells a Mux the connection is not
// gRPC's (an HTTP/2 connection opens with "PRI * HTTP/2.0"). The last byte
// is the protocol version.
const Magic = "RKVRAFT1"

// Status bytes, sent by the store after the dialer's hello.
const (
	StatusOK         byte = 0
	StatusWrongStore byte = 1 // another store listens at this address
	StatusStopping   byte = 2 // the store is shutting down
)

// MaxFrameSize bounds one frame. A batch holds at most one message over the
// transport's batch byte limit, and the largest message carries the largest
// legal command (32 MiB, kv/server's MaxGRPCMessageSize), so this leaves
// room for the message around it.
const MaxFrameSize = 64 << 20

// StatusError is a store's refusal of a connection.
type StatusError struct{ Status byte }

func (e *StatusError) Error() string {
	switch e.Status {
	case StatusWrongStore:
		return "raftwire: another store listens at this address"
	case StatusStopping:
		return "raftwire: the store is shutting down"
	}
	return fmt.Sprintf("raftwire: unknown status %d", e.Status)
}

// AppendHello appends the dialer's hello to reach store toStore.
func AppendHello(b []byte, toStore uint64) []byte {
	b = append(b, Magic...)
	return binary.BigEndian.AppendUint64(b, toStore)
}

// ReadHelloStore reads the store id of a hello whose Magic has been read
// already (by the Mux).
func ReadHelloStore(r io.Reader) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("raftwire: read hello: %w", err)
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// ReadStatus reads a status byte and returns nil for StatusOK, or a
// *StatusError.
func ReadStatus(r io.Reader) error {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	if b[0] != StatusOK {
		return &StatusError{Status: b[0]}
	}
	return nil
}

// AppendFrame appends batch as one frame.
func AppendFrame(b []byte, batch *rspb.RaftMessageBatch) ([]byte, error) {
	size := batch.Size()
	if size > MaxFrameSize {
		return b, fmt.Errorf("raftwire: batch of %d bytes exceeds the %d-byte frame limit", size, MaxFrameSize)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	n := len(b)
	b = slices.Grow(b, size)[:n+size]
	// The size is known: MarshalTo would compute it again.
	if _, err := batch.MarshalToSizedBuffer(b[n:]); err != nil {
		return b[:n-4], err
	}
	return b, nil
}

// ErrBadFrame is returned by a Reader for a frame over MaxFrameSize or one
// that is not a RaftMessageBatch.
var ErrBadFrame = errors.New("raftwire: bad frame")

// Reader reads frames from a connection.
type Reader struct {
	r   *bufio.Reader
	buf []byte
}

// NewReader returns a Reader of frames from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next reads the next frame into a new batch. The batch's messages share no
// memory with the Reader. It returns io.EOF if the connection ended between
// frames.
func (r *Reader) Next() (*rspb.RaftMessageBatch, error) {
	var head [4]byte
	if _, err := io.ReadFull(r.r, head[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(head[:])
	if size > MaxFrameSize {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrBadFrame, size, MaxFrameSize)
	}
	if int(size) > cap(r.buf) {
		r.buf = make([]byte, size)
	}
	body := r.buf[:size]
	if _, err := io.ReadFull(r.r, body); err != nil {
		return nil, noEOF(err)
	}
	if cap(r.buf) > 1<<20 {
		r.buf = nil // keep no large buffer between rare large frames
	}
	batch := new(rspb.RaftMessageBatch)
	// Unmarshal copies every bytes field, so body can be reused.
	if err := batch.Unmarshal(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	return batch, nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
