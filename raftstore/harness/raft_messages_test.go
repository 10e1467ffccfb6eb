package harness

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/proto/raft_serverpb"
)

// TestCommitOnlyAppends: a leader holds back the append that only carries a
// new commit index (raft sends one to every follower each time its commit
// advances) for a couple of rounds, and drops it when a later append to the
// same follower carries the commit anyway. Under concurrent writes most of
// them are dropped; once the writes stop, the held ones still go out, so the
// followers apply the last write without waiting for anything else.
func TestCommitOnlyAppends(t *testing.T) {
	c := New(t, Options{Stores: 3})
	leader := c.WaitLeader(1)

	// Heartbeats carry the commit index too; take it out of them, so that
	// only appends can tell a follower what is committed.
	var withEntries, commitOnly atomic.Int64
	c.Network().AddFilter(func(m *raft_serverpb.RaftMessage) bool {
		switch msg := m.Message; {
		case msg == nil: // a store ping
		case msg.Type == raftpb.MsgHeartbeat:
			msg.Commit = 0
		case msg.Type == raftpb.MsgApp && len(msg.Entries) > 0:
			withEntries.Add(1)
		case msg.Type == raftpb.MsgApp:
			commitOnly.Add(1)
		}
		return true
	})

	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := range 25 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := c.Put(ctx, fmt.Appendf(nil, "k%02d-%02d", w, i), []byte("v")); err != nil {
					t.Errorf("put: %v", err)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	apps, commits := withEntries.Load(), commitOnly.Load()
	st := c.Store(leader.StoreID).Stats()
	t.Logf("appends with entries: %d, commit-only appends: %d (held %d, dropped %d)",
		apps, commits, st.CommitAppendsHeld, st.CommitAppendsDropped)
	// Without holding, every commit index a follower learns costs it a
	// commit-only append. How many a later append spares depends on timing;
	// with 32 writers on one region some always are.
	if st.CommitAppendsDropped == 0 {
		t.Errorf("no held commit-only append was dropped (held %d)", st.CommitAppendsHeld)
	}
	if commits*2 > apps {
		t.Errorf("%d commit-only appends for %d appends with entries: they are not coalesced", commits, apps)
	}

	// The last write's commit reaches every follower through a held append:
	// heartbeats no longer carry it, and nothing else is written.
	c.MustPut([]byte("last"), []byte("v"))
	// The last entry is the write's (the leader's status may not show it
	// applied yet: a write is answered before its round publishes that).
	l, _ := c.PeerStatus(leader.StoreID, 1)
	c.Eventually(5*time.Second, func() error {
		for _, id := range c.StoreIDs() {
			st, ok := c.PeerStatus(id, 1)
			if !ok || st.AppliedIndex < l.LastIndex {
				return fmt.Errorf("store %d has not applied index %d: %+v", id, l.LastIndex, st)
			}
		}
		return nil
	})
	for _, id := range c.StoreIDs() {
		if _, ok := c.EngineGet(id, []byte("last")); !ok {
			t.Errorf("store %d lacks the last write", id)
		}
	}
}

// TestRaftMessageRegionKeys: a raft message carries its region's range only
// when it may create a peer on the receiving store (a vote, a pre-vote, a
// first heartbeat); the rest, nearly all of them, go without it. A peer
// added to a store is still created, from its leader's first heartbeat.
func TestRaftMessageRegionKeys(t *testing.T) {
	c := New(t, Options{Stores: 4})
	split := c.MustSplit([]byte("m"))
	var withKeys, without, wrong atomic.Int64
	c.Network().AddFilter(func(m *raft_serverpb.RaftMessage) bool {
		msg := m.Message
		if msg == nil {
			return true // a store ping
		}
		initial := msg.Type == raftpb.MsgVote || msg.Type == raftpb.MsgPreVote ||
			(msg.Type == raftpb.MsgHeartbeat && msg.Commit == 0)
		hasKeys := len(m.StartKey) > 0 || len(m.EndKey) > 0
		switch {
		case initial && hasKeys:
			withKeys.Add(1)
		case initial:
			// Only a peer of the first region that has not applied the
			// split yet sees a range without keys ([,)).
			if m.RegionId != firstRegionID {
				wrong.Add(1)
			}
		case hasKeys:
			wrong.Add(1)
		default:
			without.Add(1)
		}
		return true
	})
	for i := range 20 {
		c.MustPut(fmt.Appendf(nil, "a%02d", i), []byte("v"))
		c.MustPut(fmt.Appendf(nil, "z%02d", i), []byte("v"))
	}
	// Take the upper region ([m, )) off store 4, then add it back as a new
	// peer, which the leader's first heartbeat creates.
	const spare = 4
	c.MustRemovePeer(split.Id, peerOn(c, split.Id, spare))
	c.MustNonePeer(split.Id, spare)
	c.MustAddPeer(split.Id, c.NewPeer(spare))
	c.MustHavePeer(split.Id, spare)
	c.Eventually(10*time.Second, func() error {
		if _, ok := c.EngineGet(spare, []byte("z19")); !ok {
			return fmt.Errorf("store %d lacks z19", spare)
		}
		return nil
	})
	t.Logf("messages with the region's keys: %d, without: %d", withKeys.Load(), without.Load())
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d messages carried the region's keys without needing them, or lacked them", n)
	}
	if withKeys.Load() == 0 {
		t.Errorf("no message carried the region's keys, yet a peer was created")
	}
}
