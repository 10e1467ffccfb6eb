package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/regionkv/regionkv/proto/raft_cmdpb"
)

// A normal raft entry proposed by regionkv carries a 16-byte header, the
// proposing peer's id and a sequence number, followed by the marshalled
// RaftCmdRequest. An entry with no data is raft's own no-op.
const proposalHeaderSize = 16

// ErrProposalUnknown: the proposal left this peer but the peer never saw it
// in its own log, so whether it will ever apply is unknown. Callers must
// treat the write as possibly applied.
var ErrProposalUnknown = errors.New("raftstore: proposal outcome unknown")

func encodeProposal(peerID, seq uint64, cmd *raft_cmdpb.RaftCmdRequest) ([]byte, error) {
	data := make([]byte, proposalHeaderSize+cmd.Size())
	binary.BigEndian.PutUint64(data[0:], peerID)
	binary.BigEndian.PutUint64(data[8:], seq)
	if _, err := cmd.MarshalTo(data[proposalHeaderSize:]); err != nil {
		return nil, err
	}
	return data, nil
}

func decodeProposal(data []byte) (peerID, seq uint64, cmd *raft_cmdpb.RaftCmdRequest, err error) {
	if len(data) < proposalHeaderSize {
		return 0, 0, nil, fmt.Errorf("entry of %d bytes is shorter than the proposal header", len(data))
	}
	cmd = new(raft_cmdpb.RaftCmdRequest)
	if err := cmd.Unmarshal(data[proposalHeaderSize:]); err != nil {
		return 0, 0, nil, err
	}
	return binary.BigEndian.Uint64(data[0:]), binary.BigEndian.Uint64(data[8:]), cmd, nil
}

func proposalSeq(data []byte, peerID uint64) (uint64, bool) {
	if len(data) < proposalHeaderSize || binary.BigEndian.Uint64(data[0:]) != peerID {
		return 0, false
	}
	return binary.BigEndian.Uint64(data[8:]), true
}

// proposal is a command this peer proposed and whose callback is pending.
type proposal struct {
	seq uint64
	// index and term are the log position of the entry, learned from the
	// Ready that persisted it; 0 until then.
	index, term uint64
	// tick is the peer's tick count when it was proposed, at the time.
	tick uint64
	at   time.Time
	cb   Callback
}

// proposalQueue tracks this peer's pending proposals. A proposal is resolved
// when the entry at its (index, term) applies (success), when another entry
// applies at or past its index (ErrStaleCommand: it can never apply), or,
// for one never seen in the local log, when it is applied anyway (matched by
// seq) or times out (ErrProposalUnknown).
//
// A pending proposal survives a leadership change: a deposed leader's entry
// may still be committed by the next leader, and the peer learns its fate
// when it applies that index as a follower.
type proposalQueue struct {
	bySeq map[uint64]*proposal
	// assigned holds the proposals whose index is known, in index order.
	assigned []*proposal
}

func (q *proposalQueue) add(p *proposal) {
	if q.bySeq == nil {
		q.bySeq = make(map[uint64]*proposal)
	}
	q.bySeq[p.seq] = p
}

// assign records that the entry carrying seq was persisted at (index, term).
func (q *proposalQueue) assign(seq, index, term uint64) {
	p, ok := q.bySeq[seq]
	if !ok || p.index != 0 {
		return
	}
	p.index, p.term = index, term
	q.assigned = append(q.assigned, p)
}

// resolve is called for every applied entry (index, term). seq is set (ok)
// when the entry was proposed by this peer. It returns the proposal whose
// command this entry is, if it is pending here, and calls stale for every
// proposal that can no longer apply.
func (q *proposalQueue) resolve(index, term, seq uint64, ours bool, stale func(*proposal)) *proposal {
	var match *proposal
	for len(q.assigned) > 0 && q.assigned[0].index <= index {
		p := q.assigned[0]
		q.assigned[0] = nil
		q.assigned = q.assigned[1:]
		if p.index == index && p.term == term && ours && p.seq == seq {
			match = p
			continue
		}
		delete(q.bySeq, p.seq)
		stale(p)
	}
	if len(q.assigned) == 0 {
		q.assigned = nil
	}
	if match == nil && ours {
		// Proposed here but never seen in this peer's log: the rare case of
		// a leader deposed in the round it proposed, whose MsgApp still got out.
		match = q.bySeq[seq]
	}
	if match != nil {
		delete(q.bySeq, match.seq)
	}
	return match
}

// expireUnassigned fails proposals that never reached the local log and are
// older than maxAge ticks.
func (q *proposalQueue) expireUnassigned(now, maxAge uint64, fail func(*proposal)) {
	for seq, p := range q.bySeq {
		if p.index == 0 && now-p.tick > maxAge {
			delete(q.bySeq, seq)
			fail(p)
		}
	}
}

// drain removes every pending proposal.
func (q *proposalQueue) drain(fail func(*proposal)) {
	for _, p := range q.bySeq {
		fail(p)
	}
	q.bySeq, q.assigned = nil, nil
}

func (q *proposalQueue) len() int { return len(q.bySeq) }
