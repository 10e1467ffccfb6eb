package raftstore

import (
	"go.etcd.io/raft/v3"

	"github.com/regionkv/regionkv/proto/metapb"
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
	// peerMsgCampaign: a split-created peer whose parent led starts an
	// election at once.
	peerMsgCampaign
	// peerMsgReplaceBySplit: an uninitialized peer learns that its region
	// was just created here by a split (split); it gives way.
	peerMsgReplaceBySplit
	// peerMsgSplitCheckResult: the split checker measured region split
	// (its epoch as measured) and proposes splitKey (nil: no split needed).
	peerMsgSplitCheckResult
	// peerMsgForceSplitCheck: split the region in the middle (an operator).
	peerMsgForceSplitCheck
	// peerMsgWake: a quiesced follower's leader store went silent.
	peerMsgWake
	// peerMsgRegionHeartbeat: a quiesced leader reports its region to the
	// scheduler; it does not tick, so its own heartbeat tick never comes,
	// and operators ride the heartbeat responses.
	peerMsgRegionHeartbeat
	// peerMsgKVSynced: a kv sync that the peer's checkpoint waited for is
	// done; the round writes the checkpoint (kv_sync.go).
	peerMsgKVSynced
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

	split                  *metapb.Region
	campaign               bool
	splitKey               []byte
	approxSize, approxKeys uint64
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
