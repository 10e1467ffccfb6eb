package raftstore

import (
	"bytes"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
)

// Leader leases and local reads (TiKV's LocalReader; RAFT-NOTES §3).
//
// A ReadIndex read costs a heartbeat round to a quorum and a trip through
// the raft worker. A leader that holds a lease answers reads at once, on the
// caller's goroutine, from the kv DB as it is.
//
// Why that is linearizable. With CheckQuorum, a follower that heard from its
// leader less than an election timeout ago refuses (pre-)votes. When a
// quorum acknowledged something the leader sent after time T (it committed
// an entry proposed at T, or confirmed a ReadIndex issued at T), every
// quorum that could elect another leader contains a member that heard from
// this leader after T, so no other leader exists before T plus an election
// timeout. The lease ends earlier: leaseDuration takes off the ticks a
// worker round may count late and a margin for clock-rate drift. Until
// then this peer is the only leader, and once it has applied an entry of its
// own term every acknowledged write is in its kv DB.
//
// What would break the argument, and what is done about it:
//   - A leader transfer: MsgTimeoutNow makes the target campaign past the
//     followers' lease. The lease ends when a transfer starts and whenever a
//     MsgTimeoutNow goes out, is not renewed while a transfer is pending,
//     nor from anything sent before two election timeouts later.
//   - A split committed here but not yet applied may be applied on the
//     other stores, whose new region then elects a leader and takes writes
//     for keys in this peer's old range: the lease ends when the leader
//     proposes a split and does not renew until the split is answered.
//   - Membership changes and splits change which quorums exist or which
//     keys the region holds: the lease ends when one applies and renews only
//     from things proposed after it.
//   - A follower that restarted forgot when it last heard from the leader
//     and would vote at once. A peer loaded from disk that may have
//     acknowledged a leader refuses non-transfer votes for its first
//     election timeout (voteAllowed).
//
// Ticks are counted on each store's monotonic clock; the margin covers the
// rate drift between machines, not a clock that jumps. The argument assumes
// every store has the same tick interval and election ticks: a store
// configured with a shorter election timeout than the leader's would vote
// inside the leader's lease.

// readDelegate is what a leader publishes for local reads; immutable.
type readDelegate struct {
	region *metapb.Region
	peer   *metapb.Peer
	term   uint64
	until  time.Time // monotonic; the lease ends here
}

// readDelegates is the store's table of regions it may read locally.
type readDelegates struct {
	mu sync.RWMutex
	m  map[uint64]*readDelegate
}

func (r *readDelegates) get(regionID uint64) *readDelegate {
	r.mu.RLock()
	d := r.m[regionID]
	r.mu.RUnlock()
	return d
}

func (r *readDelegates) set(regionID uint64, d *readDelegate) {
	r.mu.Lock()
	if d == nil {
		delete(r.m, regionID)
	} else {
		if r.m == nil {
			r.m = make(map[uint64]*readDelegate)
		}
		r.m[regionID] = d
	}
	r.mu.Unlock()
}

// leaseDuration is how long a quorum acknowledgement keeps this leader's
// lease, or 0 (no local reads) when the election timeout leaves no room.
func (c *Config) leaseDuration() time.Duration {
	// Ticks generated before the acknowledgement that a follower may still
	// count after it: up to maxTicksPerRound in its round, the one the store
	// ticker is handing out and one waiting in the ticker's channel; and
	// one more because the first tick after it may come at once.
	ticks := c.RaftElectionTicks - maxTicksPerRound - 3
	if ticks <= 0 || c.DisableLeaseRead {
		return 0
	}
	// 10% for clock-rate drift between stores.
	return time.Duration(ticks) * c.RaftBaseTickInterval * 9 / 10
}

// leaderLease is a leader peer's lease bookkeeping; worker-owned.
type leaderLease struct {
	until time.Time
	// notBefore: acknowledgements of things sent before it renew nothing.
	notBefore time.Time
	// since is when the peer became leader of term: its first entry
	// (raft's no-op) was sent after it. A peer deposed and elected again
	// within one round keeps the older since and term, which only ever
	// shortens the lease or withholds it (publishLease checks the term).
	term  uint64
	since time.Time
	// appliedTerm is the term of the last applied entry.
	appliedTerm uint64
	// splits counts this leader's split proposals not yet answered: while
	// one may be committed but not applied, another region may already own
	// part of this one's range elsewhere.
	splits    int
	published *readDelegate
}

// renewLease extends the lease to at + leaseDuration: a quorum acknowledged
// something this leader sent after at.
func (p *peer) renewLease(at time.Time) {
	d := p.store.leaseDur
	if d == 0 || !p.isLeader || at.IsZero() || at.Before(p.lease.notBefore) || p.lease.splits > 0 ||
		p.rn.BasicStatus().LeadTransferee != 0 {
		return
	}
	if u := at.Add(d); u.After(p.lease.until) {
		p.lease.until = u
	}
}

// endLease drops the lease at once (before the round's kv writes become
// visible) and ignores acknowledgements of anything sent before
// now + holdOff.
func (p *peer) endLease(holdOff time.Duration) {
	now := time.Now()
	p.lease.until = time.Time{}
	if nb := now.Add(holdOff); nb.After(p.lease.notBefore) {
		p.lease.notBefore = nb
	}
	if p.lease.published != nil {
		p.lease.published = nil
		p.store.readers.set(p.regionID(), nil)
	}
}

// publishLease runs once a round's kv writes are visible: it offers local
// reads while the lease holds, the peer leads with no transfer under way and
// it has applied an entry of its own term.
func (p *peer) publishLease() {
	if p.store.leaseDur == 0 || (!p.isLeader && p.lease.published == nil) {
		return
	}
	st := p.rn.BasicStatus()
	ok := p.isLeader && !p.dead && !p.pendingDestroy && st.LeadTransferee == 0 && p.lease.splits == 0 &&
		p.lease.term == st.Term && p.lease.appliedTerm == st.Term && time.Now().Before(p.lease.until)
	if !ok {
		if p.lease.published != nil {
			p.lease.published = nil
			p.store.readers.set(p.regionID(), nil)
		}
		return
	}
	cur := p.lease.published
	region := p.region()
	if cur != nil && cur.until.Equal(p.lease.until) && cur.region == region && cur.term == st.Term {
		return
	}
	d := &readDelegate{region: region, peer: p.meta, term: st.Term, until: p.lease.until}
	p.lease.published = d
	p.store.readers.set(p.regionID(), d)
}

// leaseSplitting ends the lease for a split this leader proposes and keeps
// it from renewing until the split's answer (applied, refused or lost): a
// split committed but not yet applied here may be applied on the other
// stores, whose new region can elect a leader and take writes for keys this
// peer would still read. It returns the callback to propose with.
func (p *peer) leaseSplitting(cb Callback) Callback {
	p.endLease(0)
	p.lease.splits++
	term := p.lease.term
	return func(res Result) {
		// Callbacks run on the worker that owns the peer.
		if p.lease.term == term && p.lease.splits > 0 {
			p.lease.splits--
		}
		p.endLease(0) // anything acknowledged before now predates the split
		cb(res)
	}
}

// transferHoldOff: after a leader transfer starts, acknowledgements renew
// the lease only for things sent this much later, past any MsgTimeoutNow
// still in flight.
func (p *peer) transferHoldOff() time.Duration {
	return 2 * p.store.cfg.electionTimeout()
}

// holdVotes makes a peer that may have acknowledged a leader, but forgot it
// (loaded from disk, or created in place of one), refuse votes for an
// election timeout (voteAllowed).
func (p *peer) holdVotes() {
	p.noVotesUntil = time.Now().Add(p.store.cfg.electionTimeout())
}

// voteAllowed reports whether a vote request may reach raft. A peer loaded
// from disk refuses non-transfer (pre-)votes until an election timeout after
// it started, standing in for the lease it cannot remember.
func (p *peer) voteAllowed(m *raftpb.Message) bool {
	if m.Type != raftpb.MsgVote && m.Type != raftpb.MsgPreVote {
		return true
	}
	if p.noVotesUntil.IsZero() || bytes.Equal(m.Context, campaignTransfer) {
		return true
	}
	if time.Now().Before(p.noVotesUntil) {
		return false
	}
	p.noVotesUntil = time.Time{}
	return true
}

// campaignTransfer is the context raft puts on votes of a leader transfer
// (raft.campaignTransfer, unexported there).
var campaignTransfer = []byte("CampaignTransfer")

// localRead answers a read command from a leader's lease, or reports false
// so the command takes the ReadIndex path (which also produces every error
// the local path does not bother with).
func (s *Store) localRead(req *raft_cmdpb.RaftCmdRequest) (Result, bool) {
	h := req.GetHeader()
	if s.leaseDur == 0 || h == nil || !isReadCommand(req) || s.ctx.Err() != nil {
		return Result{}, false
	}
	d := s.readers.get(h.RegionId)
	if d == nil || !time.Now().Before(d.until) {
		return Result{}, false
	}
	if h.Peer != nil && ((h.Peer.StoreId != 0 && h.Peer.StoreId != d.peer.StoreId) || (h.Peer.Id != 0 && h.Peer.Id != d.peer.Id)) {
		return Result{}, false
	}
	if (h.Term != 0 && h.Term != d.term) || checkEpoch(req, d.region) != nil || checkKeys(req, d.region) != nil {
		return Result{}, false
	}
	resp := &raft_cmdpb.RaftCmdResponse{
		Header:    &raft_cmdpb.RaftResponseHeader{CurrentTerm: d.term},
		Responses: make([]*raft_cmdpb.Response, 0, len(req.Requests)),
	}
	for _, r := range req.Requests {
		resp.Responses = append(resp.Responses, &raft_cmdpb.Response{
			CmdType: r.CmdType,
			Snap:    &raft_cmdpb.SnapResponse{Region: d.region},
		})
	}
	// Take the snapshot, then check that the lease still held: a snapshot
	// taken after it ended (this goroutine may sleep between the first check
	// and here) could miss another leader's writes.
	snap := NewRegionSnapshot(s.engines.KV, d.region)
	if !time.Now().Before(d.until) || s.readers.get(h.RegionId) != d {
		snap.Close()
		return Result{}, false
	}
	s.stats.localReads.Add(1)
	return Result{Resp: resp, Snap: snap}, true
}
