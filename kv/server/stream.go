package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/kv/raftwire"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/raftstore"
)

// Raft receives raft messages from a gRPC stream and hands each to the
// raftstore, in order. Stores send theirs on a raft connection instead
// (ServeRaftConn); this is the same service over gRPC. A message the
// raftstore rejects is logged and skipped (raft tolerates lost messages); the
// stream ends when the sender closes it, when it breaks, or with Unavailable
// when the store stops or StopStreams is called.
func (s *Server) Raft(stream kvpb.Kv_RaftServer) error {
	ctx := stream.Context()
	var remote net.Addr
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr
	}
	batches, recvErr := receive(ctx, stream.Recv)
	for {
		var batch *raft_serverpb.RaftMessageBatch
		select {
		case batch = <-batches:
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return stream.SendAndClose(&raft_serverpb.Done{})
			}
			// The stream broke or its context ended; err is already a gRPC
			// status and there is no one left to tell.
			return err
		case <-s.streamsStopped:
			return status.Error(codes.Unavailable, "the store is shutting down")
		}
		if err := s.deliverRaft(batch, remote); err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
	}
}

// deliverRaft hands a batch's messages to the raftstore, in order. It logs
// and skips a message the raftstore rejects, and returns
// raftstore.ErrStoreStopped once the store has stopped.
func (s *Server) deliverRaft(batch *raft_serverpb.RaftMessageBatch, remote net.Addr) error {
	for _, msg := range batch.GetMsgs() {
		if msg == nil {
			continue
		}
		err := s.store.OnRaftMessage(msg)
		if err == nil {
			s.raftReceived.Add(1)
			continue
		}
		if errors.Is(err, raftstore.ErrStoreStopped) {
			return err
		}
		// A message for a region this store does not hold can repeat with
		// every heartbeat; keep it out of the default log level.
		level := slog.LevelWarn
		var notFound *raftstore.RegionNotFoundError
		if errors.As(err, &notFound) {
			level = slog.LevelDebug
		}
		s.log.Log(context.Background(), level, "dropped raft message", s.raftMessageAttrs(remote, msg, err)...)
	}
	return nil
}

// receive calls recv on a goroutine of its own and hands over each message,
// so that a stream handler can wait for the next one and for StopStreams at
// once. It ends when recv fails (the error goes to the second channel), at
// the latest when the handler returns and ctx ends.
func receive[T any](ctx context.Context, recv func() (T, error)) (<-chan T, <-chan error) {
	msgs := make(chan T)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return msgs, recvErr
}

// StopStreams ends every raft connection and Raft stream, now and later
// (streams with Unavailable, connections with raftwire.StatusStopping): the
// senders' transports see the store unreachable. BatchCommands streams stop
// reading, answer what they have read and end the same way. A store
// shutting down calls it before grpc.Server.GracefulStop, which would
// otherwise wait for the other stores and the clients to close their
// long-lived streams. Unary client requests are not affected. It is
// idempotent.
func (s *Server) StopStreams() {
	s.stopStreamsOnce.Do(func() {
		s.raftMu.Lock()
		close(s.streamsStopped)
		conns := s.raftConns
		s.raftConns = nil
		s.raftMu.Unlock()
		for conn := range conns {
			refuseRaftConn(conn, raftwire.StatusStopping)
		}
	})
}

// raftMessageAttrs describes a dropped raft message for the log.
func (s *Server) raftMessageAttrs(remote net.Addr, msg *raft_serverpb.RaftMessage, err error) []any {
	attrs := []any{
		slog.Uint64("store_id", s.store.StoreID()),
		slog.Uint64("region_id", msg.RegionId),
		slog.Uint64("from_peer", msg.GetFromPeer().GetId()),
		slog.Uint64("to_peer", msg.GetToPeer().GetId()),
	}
	if m := msg.Message; m != nil {
		attrs = append(attrs, slog.String("msg_type", m.Type.String()), slog.Uint64("term", m.Term))
	}
	if remote != nil {
		attrs = append(attrs, slog.String("remote", remote.String()))
	}
	return append(attrs, slog.Any("err", err))
}

// Snapshot receives a raft snapshot: the first chunk carries the MsgSnap, the
// following ones the snapshot's files, concatenated. The data is streamed
// into the raftstore, which verifies sizes and checksums, stores the files
// and only then hands the message to the peer. The reply comes once the
// snapshot is stored; any failure ends the stream with an error, which the
// sender reports to raft.
func (s *Server) Snapshot(stream kvpb.Kv_SnapshotServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	msg := first.GetMessage()
	if msg == nil {
		return status.Error(codes.InvalidArgument, "the first snapshot chunk must carry the raft message")
	}
	pr, pw := io.Pipe()
	recvErr := make(chan error, 1)
	go func() {
		err := s.store.ReceiveSnapshot(msg, pr)
		pr.CloseWithError(err) // unblocks the writer below if the store gave up early
		recvErr <- err
	}()
	writeErr := func() error {
		if len(first.Data) > 0 {
			if _, err := pw.Write(first.Data); err != nil {
				return err
			}
		}
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if chunk.Message != nil {
				return status.Error(codes.InvalidArgument, "only the first snapshot chunk may carry a message")
			}
			if _, err := pw.Write(chunk.Data); err != nil {
				return err
			}
		}
	}()
	pw.CloseWithError(writeErr)
	err = <-recvErr
	if err == nil && writeErr != nil {
		err = writeErr
	}
	if err != nil {
		s.log.Warn("snapshot rejected", "store_id", s.store.StoreID(), "region_id", msg.RegionId, "err", err)
		if _, ok := status.FromError(err); ok {
			return err
		}
		if errors.Is(err, raftstore.ErrStoreStopped) {
			return status.Error(codes.Unavailable, err.Error())
		}
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return stream.SendAndClose(&raft_serverpb.Done{})
}
