package raftstore

import "go.etcd.io/raft/v3/raftpb"

// Commit-only appends.
//
// Each time a leader's commit index advances, raft sends every follower an
// append with no entries, only to tell it the new commit index. Under a
// steady load the leader appends again a round or two later, and that append
// carries the commit index too; the commit-only one, its acknowledgement and
// the follower's Ready for it are then wasted work: in a 16-region put
// benchmark they were half of all raft messages.
//
// So a leader holds its commit-only appends back for up to holdRounds of its
// rounds (finishReady keeps it in the next round while it holds any), drops
// one when a later append or snapshot goes to the same follower, and sends
// the rest. Delaying or dropping a raft message is always safe; what could
// suffer is a follower's apply, which waits at most holdRounds. An append
// without entries also goes to a follower whose progress raft is probing, or
// whose in-flight appends are at their limit; those wait as long, and raft
// sends another on the follower's next heartbeat response if need be.

// holdRounds is how many of its rounds a leader holds a commit-only append,
// the one that made it included.
const holdRounds = 3

// holdCommitOnly sends msgs, a leader's Ready messages, except the
// commit-only appends, which it holds; a message to a follower drops the
// append held for it.
func (p *peer) holdCommitOnly(msgs []raftpb.Message) {
	out := msgs[:0]
	for _, m := range msgs {
		switch {
		case m.Type == raftpb.MsgApp && len(m.Entries) == 0:
			p.dropHeld(m.To)
			p.held = append(p.held, m)
			p.store.stats.heldApps.Add(1)
			continue
		case m.Type == raftpb.MsgApp || m.Type == raftpb.MsgSnap:
			p.dropHeld(m.To)
		}
		out = append(out, m)
	}
	p.send(out)
}

func (p *peer) dropHeld(to uint64) {
	for i := range p.held {
		if p.held[i].To == to {
			p.held = append(p.held[:i], p.held[i+1:]...)
			p.store.stats.droppedApps.Add(1)
			return
		}
	}
}

// flushHeld is called once per round the peer is in: it sends the held
// appends once they have waited holdRounds, or at once if the peer is no
// longer the leader.
func (p *peer) flushHeld() {
	if len(p.held) == 0 {
		return
	}
	p.heldRounds++
	if p.heldRounds < holdRounds && p.isLeader {
		return
	}
	if !p.dead {
		p.send(p.held)
	}
	p.held = nil // the transport keeps pointers into it
	p.heldRounds = 0
}
