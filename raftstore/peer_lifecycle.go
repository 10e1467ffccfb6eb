package raftstore

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// maybeStale handles the messages that tell a peer it is out of date, and
// answers peers that are. It reports whether msg was consumed.
//
//   - A message for a higher peer id of this region on this store means this
//     peer was removed and the store re-added with a new id: this one is
//     destroyed and the message goes to the store, which creates the new one.
//   - A message for a lower peer id is for an older incarnation: dropped.
//   - A tombstone message with a newer conf_ver than ours tells this peer it
//     was removed while it was away: destroyed.
//   - A message from a peer that is no longer a member, carrying an older
//     conf_ver, gets a tombstone message back, so that a removed peer which
//     missed its own removal learns it.
//   - A message from a non-member carrying the same conf_ver: dropped.
//     (One carrying a newer conf_ver is stepped: see below.)
func (p *peer) maybeStale(msg *rspb.RaftMessage) bool {
	to, from := msg.GetToPeer(), msg.GetFromPeer()
	if to == nil || from == nil {
		return false
	}
	switch {
	case to.Id > p.meta.Id:
		p.destroy(fmt.Sprintf("store re-added to the region as peer %d", to.Id))
		_ = p.store.router.SendStore(storeMsg{kind: storeMsgRaft, raft: msg})
		return true
	case to.Id < p.meta.Id:
		return true
	case msg.IsTombstone:
		if epochNewer(msg.RegionEpoch, p.region().RegionEpoch, false) {
			p.destroy("told by a newer member that it was removed")
		}
		return true
	}
	if p.isMember(from.Id) {
		return false
	}
	// A sender our region does not list: removed, if its region is older
	// than ours (tell it); a stranger, if it is as old; added by a change
	// this peer has not applied yet, if it is newer. That one may be the
	// leader that would bring the change, or a candidate that needs this
	// peer's vote, so its messages are stepped.
	region := p.region()
	switch {
	case epochNewer(region.RegionEpoch, msg.RegionEpoch, false):
		_ = p.store.trans.Send(&rspb.RaftMessage{
			RegionId:    region.Id,
			FromPeer:    p.meta,
			ToPeer:      from,
			RegionEpoch: region.RegionEpoch,
			IsTombstone: true,
			StartKey:    region.StartKey,
			EndKey:      region.EndKey,
		})
		return true
	case !epochNewer(msg.RegionEpoch, region.RegionEpoch, false):
		p.log.Warn("dropping raft message", "err", fmt.Errorf("message from peer %d, not a member of the region", from.Id))
		return true
	}
	return false
}

// epochNewer reports whether a is newer than b in conf_ver (and, with
// version, in version).
func epochNewer(a, b *metapb.RegionEpoch, version bool) bool {
	if a == nil || b == nil {
		return false
	}
	return a.ConfVer > b.ConfVer || (version && a.Version > b.Version)
}

// isInitialMsg reports whether a message may create a peer: only a leader or
// candidate reaching out to a peer it has never heard from sends these (a
// heartbeat to an unknown peer carries commit 0).
func isInitialMsg(m *raftpb.Message) bool {
	return m.Type == raftpb.MsgVote || m.Type == raftpb.MsgPreVote ||
		(m.Type == raftpb.MsgHeartbeat && m.Commit == 0)
}

// runStoreWorker handles the store mailbox: raft messages for regions that
// have no peer here.
func (s *Store) runStoreWorker() {
	var buf []storeMsg
	for {
		var ok bool
		buf, ok = s.router.FetchStore(buf[:0])
		if !ok {
			return
		}
		for _, m := range buf {
			if m.kind == storeMsgRaft {
				if err := s.maybeCreatePeer(m.raft); err != nil {
					s.log.Debug("dropping raft message for an unknown region", "region_id", m.raft.RegionId, "err", err)
				}
			}
		}
		clear(buf)
	}
}

// maybeCreatePeer creates an uninitialized peer for a message to a region
// this store has no peer of, when that is safe: the message is an initial
// one, the region is not a tombstone here for this or a later peer id, and
// its range overlaps no region this store holds. The peer learns its region
// from the snapshot its leader will send.
func (s *Store) maybeCreatePeer(msg *rspb.RaftMessage) error {
	regionID := msg.RegionId
	if err := s.router.Send(regionID, peerMsg{kind: peerMsgRaft, raft: msg}); err == nil {
		return nil // created meanwhile
	}
	if msg.IsTombstone || msg.Message == nil {
		return errors.New("tombstone for a peer that is already gone")
	}
	var st rspb.RegionLocalState
	err := engine.GetMsg(s.engines.KV, engine.RegionStateKey(regionID), &st)
	switch {
	case err == nil && st.State != rspb.PeerState_Tombstone:
		return fmt.Errorf("region %d has local state %v but no peer", regionID, st.State)
	case err == nil:
		if old := findPeer(st.Region, s.ident.StoreId); old != nil && msg.ToPeer.Id <= old.Id {
			return fmt.Errorf("peer %d is a tombstone here", msg.ToPeer.Id)
		}
		if !epochNewer(msg.RegionEpoch, st.Region.RegionEpoch, true) {
			return fmt.Errorf("message epoch %v is not newer than the tombstone's %v", msg.RegionEpoch, st.Region.RegionEpoch)
		}
	case !errors.Is(err, engine.ErrNotFound):
		return err
	}
	if !isInitialMsg(msg.Message) {
		return fmt.Errorf("%v cannot create a peer", msg.Message.Type)
	}
	probe := &metapb.Region{Id: regionID, StartKey: msg.StartKey, EndKey: msg.EndKey}
	if o := s.overlapping(probe, regionID); o != nil {
		if t := msg.Message.Type; (t == raftpb.MsgVote || t == raftpb.MsgPreVote) && msg.Message.Term <= RaftInitLogTerm+1 {
			// Most likely the first election of a region a split is creating:
			// the split has not been applied here yet. Keep the vote for the
			// split-created peer, rather than make the candidate wait out an
			// election timeout.
			s.parkVote(msg)
		}
		return fmt.Errorf("range [%q, %q) overlaps region %d", msg.StartKey, msg.EndKey, o.Id)
	}
	region := &metapb.Region{Id: regionID, RegionEpoch: &metapb.RegionEpoch{}}
	p, err := newPeer(s, region, msg.ToPeer)
	if err != nil {
		return err
	}
	if err := s.router.Register(regionID, p); err != nil {
		return err
	}
	s.addPeer(p)
	p.log.Info("created uninitialized peer", "from", msg.FromPeer.GetId(), "msg", msg.Message.Type)
	return s.router.Send(regionID, peerMsg{kind: peerMsgRaft, raft: msg})
}

// maxPendingVotes bounds the votes kept for regions not created yet.
const maxPendingVotes = 1024

// parkVote keeps a first-election vote for a region that a pending split
// will create here; startSplitPeer replays it. Runs on the store worker.
func (s *Store) parkVote(msg *rspb.RaftMessage) {
	s.pendingVotes.Lock()
	defer s.pendingVotes.Unlock()
	if len(s.pendingVotes.msgs) >= maxPendingVotes {
		s.pendingVotes.msgs = s.pendingVotes.msgs[1:]
	}
	s.pendingVotes.msgs = append(s.pendingVotes.msgs, msg)
}

// takeVotes removes and returns the parked votes for a region.
func (s *Store) takeVotes(regionID uint64) []*rspb.RaftMessage {
	s.pendingVotes.Lock()
	defer s.pendingVotes.Unlock()
	var out []*rspb.RaftMessage
	kept := s.pendingVotes.msgs[:0]
	for _, m := range s.pendingVotes.msgs {
		if m.RegionId == regionID {
			out = append(out, m)
		} else {
			kept = append(kept, m)
		}
	}
	clear(s.pendingVotes.msgs[len(kept):])
	s.pendingVotes.msgs = kept
	return out
}
