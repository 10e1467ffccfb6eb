package transport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// SendSnapshot streams a snapshot to the store of msg.ToPeer on a Kv.Snapshot
// stream: a first chunk with msg (the MsgSnap), then data in chunks of
// SnapshotChunkSize. It returns nil once the receiver has stored the
// snapshot and answered Done, or the error that ended the transfer; ctx
// bounds it (data is read between sends, so a reader that blocks is not
// interrupted).
func (t *Transport) SendSnapshot(ctx context.Context, msg *rspb.RaftMessage, data io.Reader) error {
	n, err := t.sendSnapshot(ctx, msg, data)
	if err != nil {
		t.snapsFailed.Add(1)
		cerr := ctx.Err()
		if cerr == nil && status.Code(err) == codes.DeadlineExceeded {
			// The receiver enforces the deadline too (gRPC sends it along)
			// and may end the stream a moment before ctx's own timer fires.
			cerr = context.DeadlineExceeded
		}
		if cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		return fmt.Errorf("transport: snapshot of region %d to store %d: %w", msg.GetRegionId(), msg.GetToPeer().GetStoreId(), err)
	}
	t.snapsSent.Add(1)
	t.snapBytes.Add(uint64(n))
	return nil
}

func (t *Transport) sendSnapshot(ctx context.Context, msg *rspb.RaftMessage, data io.Reader) (int64, error) {
	storeID := msg.GetToPeer().GetStoreId()
	if storeID == 0 || msg.GetMessage() == nil {
		return 0, errors.New("snapshot message without a destination store or a raft message")
	}
	// Stop with the transport too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel)
	defer stop()

	conn, err := t.pool.Conn(ctx, storeID)
	if err != nil {
		return 0, err
	}
	stream, err := kvpb.NewKvClient(conn).Snapshot(ctx)
	if err != nil {
		if status.Code(err) == codes.Unavailable {
			t.pool.Invalidate(storeID, conn)
		}
		return 0, fmt.Errorf("open snapshot stream: %w", err)
	}
	// Send reports only io.EOF when the receiver ended the stream; the
	// reason comes from the receive.
	failed := func(err error) error {
		if errors.Is(err, io.EOF) {
			if rerr := stream.RecvMsg(new(rspb.Done)); rerr != nil {
				return rerr
			}
		}
		return err
	}
	if err := stream.Send(&rspb.SnapshotChunk{Message: msg}); err != nil {
		return 0, failed(err)
	}
	buf := make([]byte, t.opts.SnapshotChunkSize)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, rerr := io.ReadFull(data, buf)
		if n > 0 {
			// The codec marshals during Send, so buf may be reused after.
			if err := stream.Send(&rspb.SnapshotChunk{Data: buf[:n]}); err != nil {
				return total, failed(err)
			}
			total += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return total, fmt.Errorf("read snapshot data: %w", rerr)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return total, err
	}
	return total, nil
}
