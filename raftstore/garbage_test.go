package raftstore

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/gogo/protobuf/proto"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// TestMalformedRaftMessages feeds a follower messages that would trip raft's
// invariant checks (and panic the store) if they reached the RawNode. Each
// must be dropped, and the region must keep working.
func TestMalformedRaftMessages(t *testing.T) {
	stores := newTestCluster(t, 3)
	leader := waitLeader(t, stores, 1)
	var follower *Store
	for _, s := range stores {
		if s != leader {
			follower = s
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := leader.Execute(ctx, putCmd(leader, "a", "1")); err != nil || res.RegionError() != nil {
		t.Fatalf("put: %v %v", err, res.RegionError())
	}
	lst, _ := leader.PeerStatus(1)
	fst, _ := follower.PeerStatus(1)
	from := &metapb.Peer{Id: lst.PeerID, StoreId: lst.StoreID}
	to := &metapb.Peer{Id: fst.PeerID, StoreId: fst.StoreID}
	term := lst.Term
	msg := func(m raftpb.Message) *rspb.RaftMessage {
		m.From, m.To = from.Id, to.Id
		return &rspb.RaftMessage{RegionId: 1, FromPeer: from, ToPeer: to, Message: &m}
	}
	cases := []struct {
		name    string
		msg     *rspb.RaftMessage
		wantErr bool // rejected by the store before reaching the peer
	}{
		{"nil", nil, true},
		{"no raft message", &rspb.RaftMessage{RegionId: 1, FromPeer: from, ToPeer: to}, true},
		// Goes to the store worker, which creates no peer: the message's range
		// overlaps region 1.
		{"unknown region overlapping a local one", &rspb.RaftMessage{RegionId: 999, FromPeer: from, ToPeer: to, Message: &raftpb.Message{Type: raftpb.MsgHeartbeat, Term: term}}, false},
		{"other store", &rspb.RaftMessage{RegionId: 1, FromPeer: from, ToPeer: &metapb.Peer{Id: to.Id, StoreId: 77}, Message: &raftpb.Message{Type: raftpb.MsgHeartbeat}}, true},
		{"no peers", &rspb.RaftMessage{RegionId: 1, Message: &raftpb.Message{Type: raftpb.MsgHeartbeat}}, true},
		{"heartbeat commit past last index", msg(raftpb.Message{Type: raftpb.MsgHeartbeat, Term: term, Commit: 1 << 40}), false},
		{"append with a gap", msg(raftpb.Message{Type: raftpb.MsgApp, Term: term, Index: 1 << 30, LogTerm: term,
			Entries: []raftpb.Entry{{Index: 5, Term: term}}}), false},
		{"append with entry term above message term", msg(raftpb.Message{Type: raftpb.MsgApp, Term: term, Index: 6, LogTerm: 5,
			Entries: []raftpb.Entry{{Index: 7, Term: term + 10}}}), false},
		{"append with decreasing terms", msg(raftpb.Message{Type: raftpb.MsgApp, Term: term, Index: 6, LogTerm: term,
			Entries: []raftpb.Entry{{Index: 7, Term: term - 1}}}), false},
		{"append overwriting committed entries from a higher term", msg(raftpb.Message{Type: raftpb.MsgApp, Term: term + 5, Index: 5, LogTerm: 5,
			Entries: []raftpb.Entry{{Index: 6, Term: term + 5, Data: []byte("garbage")}}}), false},
		{"local message type", msg(raftpb.Message{Type: raftpb.MsgHup, Term: term}), false},
		{"proposal from the network", msg(raftpb.Message{Type: raftpb.MsgProp, Entries: []raftpb.Entry{{Data: []byte("x")}}}), false},
		{"term zero", msg(raftpb.Message{Type: raftpb.MsgHeartbeat}), false},
		{"from a non-member", &rspb.RaftMessage{RegionId: 1, FromPeer: &metapb.Peer{Id: 999, StoreId: 1}, ToPeer: to,
			Message: &raftpb.Message{Type: raftpb.MsgHeartbeat, From: 999, To: to.Id, Term: term}}, false},
		{"to an older peer id", &rspb.RaftMessage{RegionId: 1, FromPeer: from, ToPeer: &metapb.Peer{Id: 1, StoreId: to.StoreId},
			Message: &raftpb.Message{Type: raftpb.MsgHeartbeat, From: from.Id, To: 1, Term: term}}, false},
		{"snapshot", msg(raftpb.Message{Type: raftpb.MsgSnap, Term: term, Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 1 << 20, Term: term}}}), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := follower.OnRaftMessage(tc.msg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("OnRaftMessage error = %v, want error %v", err, tc.wantErr)
			}
		})
	}
	// The region still replicates and the follower still applies. (The
	// higher-term append above may cost the leader its leadership, which is
	// raft working as designed, not a failure.)
	for _, key := range []string{"b", "c"} {
		leader = putThroughLeader(ctx, t, stores, key, "2")
	}
	want, _ := leader.PeerStatus(1)
	for _, s := range stores {
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, _ := s.PeerStatus(1)
			if st.AppliedIndex >= want.AppliedIndex {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("store %d applied %d, leader %d", st.StoreID, st.AppliedIndex, want.AppliedIndex)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestMalformedAdminRequests sends the leader admin commands that a buggy
// scheduler could send (HandleRegionHeartbeatResponse proposes what it is
// told). Each must be answered with an error, change nothing, and leave the
// region working.
func TestMalformedAdminRequests(t *testing.T) {
	stores := newTestCluster(t, 3)
	leader := waitLeader(t, stores, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, _ := leader.PeerStatus(1)
	peer := func(id, store uint64) *metapb.Peer { return &metapb.Peer{Id: id, StoreId: store} }
	changePeer := func(typ raft_cmdpb.ConfChangeType, p *metapb.Peer) *raft_cmdpb.AdminRequest {
		return &raft_cmdpb.AdminRequest{CmdType: raft_cmdpb.AdminCmdType_ChangePeer,
			ChangePeer: &raft_cmdpb.ChangePeerRequest{ChangeType: typ, Peer: p}}
	}
	cases := []struct {
		name  string
		admin *raft_cmdpb.AdminRequest
	}{
		{"invalid admin type", &raft_cmdpb.AdminRequest{CmdType: raft_cmdpb.AdminCmdType_InvalidAdmin}},
		{"unknown admin type", &raft_cmdpb.AdminRequest{CmdType: 77}},
		{"change peer without a request", &raft_cmdpb.AdminRequest{CmdType: raft_cmdpb.AdminCmdType_ChangePeer}},
		{"change peer without a peer", changePeer(raft_cmdpb.ConfChangeType_AddNode, nil)},
		{"add peer id 0", changePeer(raft_cmdpb.ConfChangeType_AddNode, peer(0, 9))},
		{"add peer on store 0", changePeer(raft_cmdpb.ConfChangeType_AddNode, peer(900, 0))},
		{"add a second peer on a store", changePeer(raft_cmdpb.ConfChangeType_AddNode, peer(900, before.StoreID))},
		{"unknown change type", changePeer(77, peer(900, 9))},
		{"transfer leader without a request", &raft_cmdpb.AdminRequest{CmdType: raft_cmdpb.AdminCmdType_TransferLeader}},
		{"transfer leader to a non-member", &raft_cmdpb.AdminRequest{CmdType: raft_cmdpb.AdminCmdType_TransferLeader,
			TransferLeader: &raft_cmdpb.TransferLeaderRequest{Peer: peer(900, 9)}}},
		{"split without a request", &raft_cmdpb.AdminRequest{CmdType: raft_cmdpb.AdminCmdType_Split}},
		{"split with too few peer ids", &raft_cmdpb.AdminRequest{CmdType: raft_cmdpb.AdminCmdType_Split,
			Split: &raft_cmdpb.SplitRequest{SplitKey: []byte("m"), NewRegionId: 2, NewPeerIds: []uint64{201}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := &raft_cmdpb.RaftCmdRequest{
				Header:       &raft_cmdpb.RaftRequestHeader{RegionId: 1, RegionEpoch: before.Region.RegionEpoch},
				AdminRequest: tc.admin,
			}
			res, err := leader.Execute(ctx, req)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if res.RegionError() == nil {
				t.Fatalf("accepted: %v", res.Resp)
			}
		})
	}
	for _, s := range stores {
		if st, _ := s.PeerStatus(1); !proto.Equal(st.Region, before.Region) {
			t.Fatalf("store %d: the region changed: %v, was %v", st.StoreID, st.Region, before.Region)
		}
	}
	putThroughLeader(ctx, t, stores, "a", "1")
}

// putThroughLeader puts key=value in region 1 through its leader, retrying
// while leadership moves (a region error), and returns the store that led.
func putThroughLeader(ctx context.Context, t *testing.T, stores []*Store, key, value string) *Store {
	t.Helper()
	for {
		leader := waitLeader(t, stores, 1)
		res, err := leader.Execute(ctx, putCmd(leader, key, value))
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		if res.RegionError() == nil {
			return leader
		}
		time.Sleep(10 * time.Millisecond)
	}
}
