package raftstore

import (
	"go.etcd.io/raft/v3"

	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// peerMsgKind says which field of a peerMsg is set.
type peerMsgKind uint8

const (
	// peerMsgRaft: raft carries a message from another peer of the region.
	peerMsgRaft peerMsgKind = iota + 1
	// peerMsgCommand: cmd is a client or admin command; cb gets its Result.
	peerMsgCommand
	// peerMsgTick: one logical tick of the store clock.
	peerMsgTick
	// peerMsgSnapStatus: the snapshot sent to peer snapTo finished or failed.
	peerMsgSnapStatus
)

// peerMsg is what a region mailbox carries. It is a small value type so that
// ticks and raft messages are queued without allocating.
type peerMsg struct {
	kind peerMsgKind
	raft *rspb.RaftMessage
	cmd  *raft_cmdpb.RaftCmdRequest
	cb   Callback

	snapTo     uint64
	snapStatus raft.SnapshotStatus
}

// storeMsgKind says which field of a storeMsg is set.
type storeMsgKind uint8

const (
	// storeMsgRaft: a raft message for a region that has no peer here.
	storeMsgRaft storeMsgKind = iota + 1
)

// storeMsg is what the store mailbox carries.
type storeMsg struct {
	kind storeMsgKind
	raft *rspb.RaftMessage
}
