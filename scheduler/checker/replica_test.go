package checker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/cluster"
	"github.com/regionkv/regionkv/scheduler/operator"
	"github.com/regionkv/regionkv/scheduler/storage"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// env is a cluster of stores 1..n with region 1 ["", "") and a fake clock.
type env struct {
	t       *testing.T
	clock   *clock
	cluster *cluster.Cluster
	ops     *operator.Controller
	checker *ReplicaChecker
	region  *metapb.Region
	leader  uint64 // store of the leader
	nextID  uint64
}

func newEnv(t *testing.T, stores int, peerStores ...uint64) *env {
	ctx := context.Background()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	st := storage.NewMemory()
	if _, err := st.CASAllocID(ctx, 0, 1000); err != nil {
		t.Fatal(err)
	}
	c := cluster.New(cluster.Options{Storage: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now})
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	r := &metapb.Region{Id: 1, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1}}
	for _, s := range peerStores {
		r.Peers = append(r.Peers, &metapb.Peer{Id: 100 + s, StoreId: s})
	}
	boot := &metapb.Region{Id: 1, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1}, Peers: []*metapb.Peer{{Id: 101, StoreId: 1}}}
	if err := c.Bootstrap(ctx, &metapb.Store{Id: 1, Address: "s1"}, boot); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= stores; i++ {
		if err := c.PutStore(ctx, &metapb.Store{Id: uint64(i), Address: fmt.Sprintf("s%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, clock: clk, cluster: c, ops: operator.NewController(clk.now),
		checker: NewReplicaChecker(c, clk.now), region: r, leader: peerStores[0]}
	for i := 1; i <= stores; i++ {
		e.storeHeartbeat(uint64(i))
	}
	return e
}

func (e *env) storeHeartbeat(id uint64) {
	if err := e.cluster.HandleStoreHeartbeat(&schedulerpb.StoreStats{StoreId: id}); err != nil {
		e.t.Fatal(err)
	}
}

// heartbeat reports the region and returns the step the scheduler answers
// with, as the server's dispatch does.
func (e *env) heartbeat() *schedulerpb.RegionHeartbeatResponse {
	e.t.Helper()
	var leader *metapb.Peer
	for _, p := range e.region.Peers {
		if p.StoreId == e.leader {
			leader = p
		}
	}
	r := e.region
	copyRegion := &metapb.Region{Id: r.Id, RegionEpoch: &metapb.RegionEpoch{ConfVer: r.RegionEpoch.ConfVer, Version: r.RegionEpoch.Version},
		Peers: slices.Clone(r.Peers)}
	info := cluster.NewRegionInfo(copyRegion, leader)
	if err := e.cluster.HandleRegionHeartbeat(context.Background(), info); err != nil {
		e.t.Fatal(err)
	}
	info = e.cluster.GetRegion(r.Id)
	if resp := e.ops.Dispatch(info); resp != nil {
		return resp
	}
	if e.ops.Has(r.Id) {
		return nil
	}
	op, err := e.checker.Check(context.Background(), info)
	if err != nil {
		e.t.Fatal(err)
	}
	if op == nil || !e.ops.Add(op) {
		return nil
	}
	return e.ops.Dispatch(info)
}

// apply does what a leader would do with resp.
func (e *env) apply(resp *schedulerpb.RegionHeartbeatResponse) string {
	r := e.region
	switch {
	case resp.ChangePeer != nil:
		p := resp.ChangePeer.Peer
		r.RegionEpoch.ConfVer++
		switch resp.ChangePeer.ChangeType {
		case raft_cmdpb.ConfChangeType_AddLearnerNode:
			r.Peers = append(r.Peers, &metapb.Peer{Id: p.Id, StoreId: p.StoreId, Role: metapb.PeerRole_Learner})
			return fmt.Sprintf("add-learner s%d", p.StoreId)
		case raft_cmdpb.ConfChangeType_AddNode:
			for _, q := range r.Peers {
				if q.Id == p.Id {
					q.Role = metapb.PeerRole_Voter
					return fmt.Sprintf("promote s%d", p.StoreId)
				}
			}
			r.Peers = append(r.Peers, &metapb.Peer{Id: p.Id, StoreId: p.StoreId})
			return fmt.Sprintf("add-voter s%d", p.StoreId)
		case raft_cmdpb.ConfChangeType_RemoveNode:
			r.Peers = slices.DeleteFunc(r.Peers, func(q *metapb.Peer) bool { return q.Id == p.Id })
			return fmt.Sprintf("remove s%d", p.StoreId)
		}
	case resp.TransferLeader != nil:
		e.leader = resp.TransferLeader.Peer.StoreId
		return fmt.Sprintf("transfer-leader s%d", e.leader)
	}
	e.t.Fatalf("unexpected response %v", resp)
	return ""
}

// run heartbeats and applies steps until the scheduler has nothing to say.
func (e *env) run() []string {
	var log []string
	for range 50 {
		resp := e.heartbeat()
		if resp == nil {
			return log
		}
		if resp.RegionId != e.region.Id || resp.TargetPeer.GetStoreId() != e.leader {
			e.t.Fatalf("step for region %d to store %d, want region %d leader on %d", resp.RegionId, resp.TargetPeer.GetStoreId(), e.region.Id, e.leader)
		}
		log = append(log, e.apply(resp))
	}
	e.t.Fatalf("no fixed point after 50 steps: %v", log)
	return nil
}

func (e *env) voterStores() []uint64 {
	var s []uint64
	for _, p := range e.region.Peers {
		if p.Role == metapb.PeerRole_Voter {
			s = append(s, p.StoreId)
		}
	}
	slices.Sort(s)
	return s
}

func TestReplicaChecker(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stores     int
		peers      []uint64 // stores with a voter; the first leads
		setup      func(e *env)
		wantSteps  string
		wantVoters []uint64
	}{
		{
			name: "grows a new region to three replicas", stores: 3, peers: []uint64{1},
			wantSteps:  "[add-learner s2 promote s2 add-learner s3 promote s3]",
			wantVoters: []uint64{1, 2, 3},
		},
		{
			name: "healthy region is left alone", stores: 4, peers: []uint64{1, 2, 3},
			wantSteps: "[]", wantVoters: []uint64{1, 2, 3},
		},
		{
			name: "not enough stores: add what it can", stores: 2, peers: []uint64{1},
			wantSteps: "[add-learner s2 promote s2]", wantVoters: []uint64{1, 2},
		},
		{
			name: "replaces a peer on a down store", stores: 4, peers: []uint64{1, 2, 3},
			setup: func(e *env) {
				e.clock.t = e.clock.t.Add(cluster.DefaultMaxStoreDownTime + time.Minute)
				for _, s := range []uint64{1, 2, 4} {
					e.storeHeartbeat(s)
				}
			},
			wantSteps:  "[add-learner s4 promote s4 remove s3]",
			wantVoters: []uint64{1, 2, 4},
		},
		{
			name: "down store but nowhere to go: keep it", stores: 3, peers: []uint64{1, 2, 3},
			setup: func(e *env) {
				e.clock.t = e.clock.t.Add(cluster.DefaultMaxStoreDownTime + time.Minute)
				e.storeHeartbeat(1)
				e.storeHeartbeat(2)
			},
			wantSteps: "[]", wantVoters: []uint64{1, 2, 3},
		},
		{
			name: "leader on an offline store moves before its peer is removed", stores: 4, peers: []uint64{1, 2, 3},
			setup: func(e *env) {
				if err := e.cluster.SetStoreState(context.Background(), 1, metapb.StoreState_Offline); err != nil {
					e.t.Fatal(err)
				}
			},
			wantSteps:  "[add-learner s4 promote s4 transfer-leader s2 remove s1]",
			wantVoters: []uint64{2, 3, 4},
		},
		{
			name: "removes an extra replica, moving the leader off it first", stores: 4, peers: []uint64{4, 1, 2, 3},
			wantSteps:  "[transfer-leader s1 remove s4]",
			wantVoters: []uint64{1, 2, 3},
		},
		{
			name: "promotes a stray learner when a voter is missing", stores: 3, peers: []uint64{1, 2},
			setup: func(e *env) {
				e.region.Peers = append(e.region.Peers, &metapb.Peer{Id: 103, StoreId: 3, Role: metapb.PeerRole_Learner})
			},
			wantSteps: "[promote s3]", wantVoters: []uint64{1, 2, 3},
		},
		{
			name: "removes a stray learner otherwise", stores: 4, peers: []uint64{1, 2, 3},
			setup: func(e *env) {
				e.region.Peers = append(e.region.Peers, &metapb.Peer{Id: 104, StoreId: 4, Role: metapb.PeerRole_Learner})
			},
			wantSteps: "[remove s4]", wantVoters: []uint64{1, 2, 3},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.stores, tc.peers...)
			if tc.setup != nil {
				tc.setup(e)
			}
			if got := fmt.Sprint(e.run()); got != tc.wantSteps {
				t.Errorf("steps %s, want %s", got, tc.wantSteps)
			}
			if got := e.voterStores(); !slices.Equal(got, tc.wantVoters) {
				t.Errorf("voters on stores %v, want %v", got, tc.wantVoters)
			}
			if len(e.ops.Running()) != 0 {
				t.Errorf("operators still running: %v", e.ops.Running())
			}
		})
	}
}

func TestOperatorEnds(t *testing.T) {
	e := newEnv(t, 3, 1)
	resp := e.heartbeat() // add learner on s2
	if resp.GetChangePeer().GetChangeType() != raft_cmdpb.ConfChangeType_AddLearnerNode {
		t.Fatalf("first step %v", resp)
	}
	// Not applied: the step is repeated on the next heartbeat.
	if again := e.heartbeat(); again.GetChangePeer().GetPeer().GetId() != resp.ChangePeer.Peer.Id {
		t.Fatalf("step not repeated: %v", again)
	}
	// The region splits: the operator is cancelled, and a new one made.
	e.region.RegionEpoch.Version++
	e.heartbeat()
	hist := e.ops.History()
	if len(hist) != 1 || hist[0].Status != "cancelled" {
		t.Fatalf("history %v", hist)
	}
	// The new operator times out when its step never happens.
	e.clock.t = e.clock.t.Add(AddPeerTimeout + time.Second)
	for _, s := range []uint64{1, 2, 3} {
		e.storeHeartbeat(s)
	}
	e.heartbeat()
	hist = e.ops.History()
	if len(hist) != 2 || hist[1].Status != "timed out" {
		t.Fatalf("history %v", hist)
	}
}
