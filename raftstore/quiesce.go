package raftstore

import (
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// Quiescence (hibernation) of idle regions.
//
// Ticks and raft heartbeats cost every region something every tick, idle or
// not. A leader whose region has been idle for a while — nothing proposed,
// read or pending; every follower holds the whole log, which is committed
// and applied — sends each follower a last heartbeat marked quiesce and
// stops ticking. A follower that is caught up with that heartbeat stops
// ticking too. The store ticker then skips both, so an idle region costs
// nothing. Any command, any raft message other than a heartbeat response,
// wakes a peer; a woken leader's first heartbeat or append wakes the rest.
//
// A quiesced follower must still notice its leader's store dying. Stores
// ping each other once per heartbeat interval (one small message per pair
// of stores, whatever the number of regions) and record when they last
// heard from each store; a quiesced follower whose leader's store has been
// silent for an election timeout is woken, ticks, and elects a new leader.
// A quiesced leader still sends its region heartbeat every region heartbeat
// interval, so that the scheduler's operators (which ride the responses)
// reach idle regions; a step it gets back is a command, which wakes it.
// Quiescence affects only timers, never what raft decides.

// quiesceAfterElections is how many election timeouts a leader must be idle
// before it quiesces.
const quiesceAfterElections = 2

// storeTicking is the store's view of which peers tick and which sleep.
type storeTicking struct {
	mu sync.Mutex
	// active are the regions whose peers tick.
	active map[uint64]struct{}
	// sleeping maps each quiesced follower's region to its leader's store.
	sleeping map[uint64]uint64
	// leaders are the regions whose quiesced leader is here: they still
	// report to the scheduler every region heartbeat interval.
	leaders map[uint64]struct{}
	// lastHeard is when each other store was last heard from.
	lastHeard map[uint64]time.Time
	ids       []uint64 // scratch for the ticker
}

func newStoreTicking() *storeTicking {
	return &storeTicking{
		active:    make(map[uint64]struct{}),
		sleeping:  make(map[uint64]uint64),
		leaders:   make(map[uint64]struct{}),
		lastHeard: make(map[uint64]time.Time),
	}
}

func (t *storeTicking) setActive(regionID uint64) {
	t.mu.Lock()
	t.active[regionID] = struct{}{}
	delete(t.sleeping, regionID)
	delete(t.leaders, regionID)
	t.mu.Unlock()
}

// setSleeping quiesces a region; leaderStore is 0 for a quiesced leader.
func (t *storeTicking) setSleeping(regionID, leaderStore uint64) {
	t.mu.Lock()
	delete(t.active, regionID)
	if leaderStore != 0 {
		t.sleeping[regionID] = leaderStore
	} else {
		t.leaders[regionID] = struct{}{}
	}
	t.mu.Unlock()
}

func (t *storeTicking) forget(regionID uint64) {
	t.mu.Lock()
	delete(t.active, regionID)
	delete(t.sleeping, regionID)
	delete(t.leaders, regionID)
	t.mu.Unlock()
}

func (t *storeTicking) heard(storeID uint64, now time.Time) {
	t.mu.Lock()
	t.lastHeard[storeID] = now
	t.mu.Unlock()
}

// activeRegions returns the regions to tick (valid until the next call).
func (t *storeTicking) activeRegions() []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ids = t.ids[:0]
	for id := range t.active {
		t.ids = append(t.ids, id)
	}
	return t.ids
}

// quiescedLeaders returns the regions whose quiesced leader is here.
func (t *storeTicking) quiescedLeaders() []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]uint64, 0, len(t.leaders))
	for id := range t.leaders {
		out = append(out, id)
	}
	return out
}

// orphans returns the quiesced followers whose leader's store has been
// silent longer than timeout.
func (t *storeTicking) orphans(now time.Time, timeout time.Duration) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []uint64
	for region, store := range t.sleeping {
		if now.Sub(t.lastHeard[store]) > timeout {
			out = append(out, region)
		}
	}
	return out
}

// runTicker fans the store clock out as logical ticks to the peers that are
// awake, has quiesced leaders send their region heartbeats, pings the other
// stores once per heartbeat interval, and wakes quiesced followers whose
// leader's store went silent.
func (s *Store) runTicker() {
	t := time.NewTicker(s.cfg.RaftBaseTickInterval)
	defer t.Stop()
	heartbeat := time.Duration(s.cfg.RaftHeartbeatTicks) * s.cfg.RaftBaseTickInterval
	election := s.cfg.electionTimeout()
	var lastPing time.Time
	for tick := 1; ; tick++ {
		select {
		case <-s.stopc:
			return
		case now := <-t.C:
			for _, id := range s.ticking.activeRegions() {
				_ = s.router.Send(id, peerMsg{kind: peerMsgTick})
			}
			if tick%s.cfg.RegionHeartbeatTickTicks == 0 {
				for _, id := range s.ticking.quiescedLeaders() {
					_ = s.router.Send(id, peerMsg{kind: peerMsgRegionHeartbeat})
				}
			}
			if now.Sub(lastPing) >= heartbeat {
				lastPing = now
				s.pingStores()
				s.trans.Flush() // the Transport contract: sends are flushed
			}
			for _, id := range s.ticking.orphans(now, election) {
				_ = s.router.Send(id, peerMsg{kind: peerMsgWake})
			}
		}
	}
}

// pingStores sends a liveness ping to every store this one shares a region
// with.
func (s *Store) pingStores() {
	stores := map[uint64]bool{}
	s.meta.RLock()
	for _, r := range s.meta.byStart {
		for _, p := range r.Peers {
			if p.StoreId != s.ident.StoreId {
				stores[p.StoreId] = true
			}
		}
	}
	s.meta.RUnlock()
	from := &metapb.Peer{StoreId: s.ident.StoreId}
	for id := range stores {
		_ = s.trans.Send(&rspb.RaftMessage{FromPeer: from, ToPeer: &metapb.Peer{StoreId: id}})
	}
}

// isStorePing reports whether msg is a store liveness ping (no region).
func isStorePing(msg *rspb.RaftMessage) bool {
	return msg != nil && msg.RegionId == 0 && msg.Message == nil && msg.FromPeer != nil
}

// noteActivity records that something happened in the region.
func (p *peer) noteActivity() { p.lastActivity = p.ticks }

// maybeQuiesce puts an idle leader and its followers to sleep.
func (p *peer) maybeQuiesce() {
	if !p.isLeader || p.quiesced || p.ticks-p.lastActivity < uint64(quiesceAfterElections*p.store.cfg.RaftElectionTicks) ||
		p.proposals.len() > 0 || p.reads.len() > 0 || p.pendingSnap != nil {
		return
	}
	st := p.rn.BasicStatus()
	last := p.ps.raftState.LastIndex
	if st.LeadTransferee != 0 || st.Commit != last || p.ps.appliedIndex() != last || p.rn.HasReady() {
		return
	}
	caughtUp := true
	p.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if pr.Match != last {
			caughtUp = false
		}
	})
	if !caughtUp {
		return
	}
	region := p.region()
	for _, pr := range region.Peers {
		if pr.Id == p.meta.Id {
			continue
		}
		_ = p.store.trans.Send(&rspb.RaftMessage{
			RegionId:    region.Id,
			FromPeer:    p.meta,
			ToPeer:      pr,
			RegionEpoch: region.RegionEpoch,
			StartKey:    region.StartKey,
			EndKey:      region.EndKey,
			Quiesce:     true,
			Message:     &raftpb.Message{Type: raftpb.MsgHeartbeat, From: p.meta.Id, To: pr.Id, Term: st.Term, Commit: st.Commit},
		})
	}
	p.quiesced = true
	p.store.ticking.setSleeping(region.Id, 0)
}

// onQuiesceHeartbeat is a follower's side: it sleeps if the heartbeat comes
// from its leader and it holds everything the leader committed.
func (p *peer) onQuiesceHeartbeat(msg *rspb.RaftMessage) {
	st := p.rn.BasicStatus()
	if p.isLeader || st.Lead != msg.Message.From || st.Term != msg.Message.Term ||
		p.ps.raftState.LastIndex != msg.Message.Commit || p.ps.appliedIndex() != msg.Message.Commit ||
		p.proposals.len() > 0 || p.reads.len() > 0 {
		return
	}
	p.quiesced = true
	p.store.ticking.setSleeping(p.regionID(), msg.FromPeer.StoreId)
}

// wake makes a quiesced peer tick again.
func (p *peer) wake() {
	p.noteActivity()
	if !p.quiesced {
		return
	}
	p.quiesced = false
	p.store.ticking.setActive(p.regionID())
}
