package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/raftstore"
)

// execOn runs one attempt of a command on a given store's peer of region 1.
func execOn(t *testing.T, c *Cluster, storeID uint64, timeout time.Duration, reqs ...*raft_cmdpb.Request) (raftstore.Result, error) {
	t.Helper()
	st, ok := c.PeerStatus(storeID, firstRegionID)
	if !ok {
		t.Fatalf("store %d has no peer of region %d", storeID, firstRegionID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s := c.Store(storeID)
	return s.Execute(ctx, &raft_cmdpb.RaftCmdRequest{
		Header:   &raft_cmdpb.RaftRequestHeader{RegionId: firstRegionID, RegionEpoch: st.Region.RegionEpoch},
		Requests: reqs,
	})
}

var snapReq = &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Snap, Snap: &raft_cmdpb.SnapRequest{}}

func putReq(key, value string) *raft_cmdpb.Request {
	return &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Put, Put: &raft_cmdpb.PutRequest{Key: []byte(key), Value: []byte(value)}}
}

// TestOnePartition: the leader and one follower are cut off from the other
// three stores. The majority elects a leader and keeps serving; the minority
// never applies the majority's writes, never serves a read (which would be
// stale), and its old leader's unreplicated proposal fails definitely. After
// healing, everything converges.
func TestOnePartition(t *testing.T) {
	c := New(t, Options{Stores: 5})
	c.MustPut([]byte("k"), []byte("v0"))
	old := c.WaitLeader(firstRegionID)
	minority := []uint64{old.StoreID}
	var majority []uint64
	for _, id := range c.StoreIDs() {
		if id == old.StoreID {
			continue
		}
		if len(minority) < 2 {
			minority = append(minority, id)
		} else {
			majority = append(majority, id)
		}
	}
	c.Network().Partition(minority, majority)
	t.Logf("old leader store %d; minority %v, majority %v", old.StoreID, minority, majority)

	// A proposal to the old leader while it still believes it leads: it can
	// never commit, so its answer must be a definite region error.
	type answer struct {
		res raftstore.Result
		err error
	}
	stuck := make(chan answer, 1)
	go func() {
		res, err := execOn(t, c, old.StoreID, 20*time.Second, putReq("lost", "x"))
		stuck <- answer{res, err}
	}()

	c.MustPut([]byte("k"), []byte("v1"))
	c.MustPut([]byte("k2"), []byte("v2"))
	c.MustGetEqual([]byte("k"), []byte("v1"))
	for _, id := range minority {
		if v, _ := c.EngineGet(id, []byte("k")); string(v) != "v0" {
			t.Errorf("minority store %d applied k=%q during the partition", id, v)
		}
		if _, found := c.EngineGet(id, []byte("k2")); found {
			t.Errorf("minority store %d applied k2 during the partition", id)
		}
		// A read on the minority must fail: serving it would return v0.
		res, err := execOn(t, c, id, time.Second, snapReq)
		if err == nil && res.RegionError() == nil {
			v, _, _ := res.Snap.Get("", []byte("k"))
			res.Snap.Close()
			t.Errorf("minority store %d served a read during the partition (k=%q)", id, v)
		}
	}

	c.Network().Heal()
	select {
	case a := <-stuck:
		if a.err != nil || a.res.RegionError() == nil {
			t.Errorf("proposal to the deposed leader: err %v, region error %v; want a definite region error", a.err, a.res.RegionError())
		} else {
			t.Logf("proposal to the deposed leader: %s", a.res.RegionError().Message)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("proposal to the deposed leader never got an answer")
	}
	c.MustGetNone([]byte("lost"))
	c.MustGetEqual([]byte("k"), []byte("v1"))
	c.Eventually(10*time.Second, func() error {
		for _, id := range c.StoreIDs() {
			if v, _ := c.EngineGet(id, []byte("k2")); string(v) != "v2" {
				return fmt.Errorf("store %d has k2=%q after healing", id, v)
			}
		}
		return nil
	})
}
