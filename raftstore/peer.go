package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// PeerStatus is a read-only picture of a peer, published after every worker
// round that touched it. Tests and status pages read it from any goroutine.
type PeerStatus struct {
	RegionID, PeerID, StoreID uint64
	Region                    *metapb.Region
	RaftState                 raft.StateType
	LeaderID, Term            uint64
	CommitIndex, LastIndex    uint64
	AppliedIndex              uint64
	TruncatedIndex            uint64
	PendingProposals          int
	PendingReads              int
}

// IsLeader reports whether the peer was leader when the status was taken.
func (s *PeerStatus) IsLeader() bool { return s.RaftState == raft.StateLeader }

// peer is one replica of a region on this store: a RawNode, its storage and
// the proposals and reads waiting on it.
//
// A peer is owned by whichever raft worker currently holds its mailbox (the
// router hands a mailbox to one worker at a time), so its fields need no
// locks; only status is read by other goroutines.
type peer struct {
	store *Store
	meta  *metapb.Peer // this peer; immutable
	ps    *PeerStorage
	rn    *raft.RawNode
	log   *slog.Logger

	// peerCache maps peer ids of the region to peers, for addressing messages.
	peerCache map[uint64]*metapb.Peer

	proposals proposalQueue
	// batch holds the commands proposed while handling one round's
	// messages; flushProposals steps them into raft as one MsgProp, so that
	// raft sends one append per follower for all of them instead of one
	// each (and gets one acknowledgement back).
	batch struct {
		ents  []raftpb.Entry
		props []*proposal
		// cmds merges plain writes into one command (cmd_batch.go); it
		// becomes the next entry of ents when anything else is proposed or
		// the batch is flushed.
		cmds cmdBatch
	}
	reads readQueue
	// nextSeq numbers proposals and ReadIndex contexts. It starts from the
	// wall clock so that a restarted peer never reuses a sequence number
	// that may still be in its log.
	nextSeq uint64

	ticks    uint64 // logical ticks seen
	isLeader bool   // as of the last SoftState
	// quiesced: the peer sleeps (quiesce.go); lastActivity is the tick of
	// the last thing that happened in the region.
	quiesced     bool
	lastActivity uint64
	leaderID     uint64

	// Per-round state, set by collectReady and cleared by finishReady.
	ready       raft.Ready
	hasReady    bool
	unreachable []uint64
	pendingSnap *pendingSnapshot
	// appliedEarly is how many of the Ready's committed entries applyEarly
	// applied.
	appliedEarly int
	// compacted lists raft log ranges truncated by applied CompactLogs and
	// not yet handed to the log GC: it gets them once an apply state with
	// that truncated state is written (releaseCompacted, kv_sync.go), and
	// deletes them after a kv sync. Unlike the fields above, it outlives
	// the round.
	compacted []gcTask
	// deferred are raft messages left for the next round: a round steps at
	// most appendBudget bytes of appended entries (handleMsgs).
	deferred []peerMsg
	// held are a leader's commit-only appends, not sent yet, and heldRounds
	// the rounds they have waited (held_appends.go).
	held       []raftpb.Message
	heldRounds int

	// pendingSplits are regions this round's splits created; their peers
	// start once the round's kv writes commit.
	pendingSplits []*metapb.Region
	// approxSize and approxKeys are the region's size as last measured.
	approxSize, approxKeys uint64
	// lastActive is, on a leader, the tick each follower was last active.
	lastActive map[uint64]uint64

	// pendingDestroy is set when this round applied the peer's own removal;
	// the peer destroys itself once the round is done.
	pendingDestroy bool
	// dead is set once the peer is destroyed, or when a fail point simulated
	// a crash: the peer does nothing more.
	dead bool

	// lease is the leader lease; noVotesUntil holds off votes after a
	// restart (lease.go).
	lease        leaderLease
	noVotesUntil time.Time

	status atomic.Pointer[PeerStatus]
}

func newPeer(s *Store, region *metapb.Region, meta *metapb.Peer) (*peer, error) {
	tag := fmt.Sprintf("[region %d] peer %d", region.Id, meta.Id)
	log := s.log.With("region_id", region.Id, "peer_id", meta.Id)
	ps, err := newPeerStorage(s, region, tag, log)
	if err != nil {
		return nil, err
	}
	cfg := s.cfg
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        meta.Id,
		ElectionTick:              cfg.RaftElectionTicks,
		HeartbeatTick:             cfg.RaftHeartbeatTicks,
		Storage:                   ps,
		Applied:                   ps.appliedIndex(),
		MaxSizePerMsg:             cfg.RaftMaxSizePerMsg,
		MaxCommittedSizePerReady:  cfg.RaftMaxCommittedSizePerReady,
		MaxUncommittedEntriesSize: cfg.RaftMaxUncommittedSize,
		MaxInflightMsgs:           cfg.RaftMaxInflightMsgs,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		DisableProposalForwarding: true,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{log},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tag, err)
	}
	p := &peer{
		store:     s,
		meta:      meta,
		ps:        ps,
		rn:        rn,
		log:       log,
		peerCache: make(map[uint64]*metapb.Peer),
		nextSeq:   uint64(time.Now().UnixNano()),
	}
	for _, pr := range region.Peers {
		p.peerCache[pr.Id] = pr
	}
	p.publishStatus()
	return p, nil
}

func (p *peer) region() *metapb.Region { return p.ps.region }
func (p *peer) regionID() uint64       { return p.ps.region.Id }

func (p *peer) seq() uint64 {
	p.nextSeq++
	return p.nextSeq
}

// handleMsgs steps everything the mailbox delivered this round.
func (p *peer) handleMsgs(msgs []peerMsg) {
	if p.dead {
		for i := range msgs {
			if msgs[i].kind == peerMsgCommand {
				msgs[i].cb(noAnswer(ErrStoreStopped))
			}
		}
		return
	}
	// Raft messages deferred by the last round go first, in order. Once
	// this round has stepped appendBudget bytes of appended entries, the
	// remaining raft messages wait for the next round: a follower catching
	// up may have many MB of MsgApps queued, and its Ready is held in memory
	// and written in one raft log record. Raft messages only: the others are
	// answered or applied now, whatever becomes of the peer.
	if len(p.deferred) > 0 {
		msgs = append(p.deferred, msgs...)
		p.deferred = nil
	}
	ticks, appended := 0, 0
	for i := range msgs {
		m := &msgs[i]
		if p.dead {
			// Destroyed by an earlier message of this batch.
			if m.kind == peerMsgCommand {
				m.cb(noAnswer(ErrPeerDestroyed))
			}
			continue
		}
		switch m.kind {
		case peerMsgRaft:
			n := appendBytes(m.raft)
			if len(p.deferred) > 0 || (appended > 0 && appended+n > appendBudget) {
				p.deferred = append(p.deferred, *m)
				continue
			}
			appended += n
			p.onRaftMessage(m.raft)
		case peerMsgCommand:
			p.wake()
			p.onCommand(m.cmd, m.cb)
		case peerMsgWake:
			p.wake()
		case peerMsgRegionHeartbeat:
			p.onRegionHeartbeatTick()
		case peerMsgTick:
			ticks++
		case peerMsgSnapStatus:
			p.rn.ReportSnapshot(m.snapTo, m.snapStatus)
		case peerMsgCampaign:
			_ = p.rn.Campaign()
		case peerMsgReplaceBySplit:
			p.replaceBySplit(m.split, m.campaign)
		case peerMsgSplitCheckResult:
			p.onSplitCheckResult(m.split, m.splitKey, m.approxSize, m.approxKeys)
		case peerMsgForceSplitCheck:
			p.onSplitCheckTick(true)
		case peerMsgKVSynced:
			// Nothing to do here: every round writes a synced checkpoint.
		}
	}
	if p.dead {
		return
	}
	p.flushProposals()
	// A peer that fell behind gets at most maxTicksPerRound ticks per round,
	// so a slow round never turns into a burst of elections.
	for range min(ticks, maxTicksPerRound) {
		p.onTick()
	}
	if len(p.reads.fresh) > 0 {
		ctx := p.seq()
		p.reads.issue(ctx, p.ticks)
		p.rn.ReadIndex(readCtx(ctx))
	}
}

const maxTicksPerRound = 2

// appendBytes is the size of the entries a raft message appends.
func appendBytes(msg *rspb.RaftMessage) int {
	if msg.GetMessage() == nil || msg.Message.Type != raftpb.MsgApp {
		return 0
	}
	n := 0
	for i := range msg.Message.Entries {
		n += msg.Message.Entries[i].Size()
	}
	return n
}

func (p *peer) onTick() {
	p.rn.Tick()
	p.ticks++
	cfg := &p.store.cfg
	p.trackActivity()
	p.maybeQuiesce()
	if p.ticks%uint64(cfg.RaftLogGCTickTicks) == 0 {
		p.onRaftLogGCTick()
	}
	if p.ticks%uint64(cfg.SplitCheckTickTicks) == 0 {
		p.onSplitCheckTick(false)
	}
	if p.ticks%uint64(cfg.RegionHeartbeatTickTicks) == 0 {
		p.onRegionHeartbeatTick()
	}
	if p.ticks%uint64(p.store.cfg.RaftElectionTicks) != 0 {
		return
	}
	// Housekeeping once per election timeout.
	maxAge := uint64(2 * p.store.cfg.RaftElectionTicks)
	p.reads.expire(p.ticks, maxAge, func(r pendingRead) { r.cb(errResult(errReadIndexTimeout)) })
	p.proposals.expireUnassigned(p.ticks, 4*maxAge, func(pr *proposal) { pr.cb(noAnswer(ErrProposalUnknown)) })
}

// onRaftMessage validates a message from the network and steps it. Anything
// malformed is dropped with a log line: a bad message must never reach a
// raft invariant check, which would panic the store.
func (p *peer) onRaftMessage(msg *rspb.RaftMessage) {
	if p.maybeStale(msg) {
		return
	}
	if err := p.validateRaftMessage(msg); err != nil {
		p.log.Warn("dropping raft message", "err", err)
		return
	}
	if _, ok := p.peerCache[msg.FromPeer.Id]; !ok {
		p.peerCache[msg.FromPeer.Id] = msg.FromPeer
	}
	switch t := msg.Message.Type; {
	case t == raftpb.MsgHeartbeatResp || (t == raftpb.MsgHeartbeat && p.quiesced):
		// Replies to a quiescing leader's last heartbeat, and heartbeats
		// to a sleeping follower, leave it asleep.
	default:
		p.wake()
	}
	if !p.voteAllowed(msg.Message) {
		p.log.Debug("refusing a vote request for an election timeout after restart", "type", msg.Message.Type, "from", msg.Message.From)
		return
	}
	if err := p.rn.Step(*msg.Message); err != nil {
		p.log.Debug("step raft message", "type", msg.Message.Type, "from", msg.Message.From, "err", err)
	}
	if msg.Quiesce && msg.Message.Type == raftpb.MsgHeartbeat {
		p.onQuiesceHeartbeat(msg)
	}
}

func (p *peer) validateRaftMessage(msg *rspb.RaftMessage) error {
	m := msg.Message
	switch {
	case m == nil || msg.FromPeer == nil || msg.ToPeer == nil:
		return fmt.Errorf("incomplete message")
	case msg.ToPeer.Id != p.meta.Id || m.To != p.meta.Id:
		return fmt.Errorf("message for peer %d/%d, this is peer %d", msg.ToPeer.Id, m.To, p.meta.Id)
	case m.From != msg.FromPeer.Id || m.From == 0:
		return fmt.Errorf("message from %d claims to be from peer %d", msg.FromPeer.Id, m.From)
	}
	switch m.Type {
	case raftpb.MsgApp:
		return validateAppend(m)
	case raftpb.MsgHeartbeat:
		// A leader sends commit = min(match, committed), and match never
		// exceeds what this peer has durably appended.
		if m.Commit > p.ps.raftState.LastIndex {
			return fmt.Errorf("heartbeat commit %d beyond last index %d", m.Commit, p.ps.raftState.LastIndex)
		}
	case raftpb.MsgAppResp, raftpb.MsgVote, raftpb.MsgVoteResp, raftpb.MsgPreVote, raftpb.MsgPreVoteResp,
		raftpb.MsgHeartbeatResp, raftpb.MsgTimeoutNow:
		// MsgTransferLeader is not accepted from the network: regionkv starts
		// transfers on the leader itself, where the lease is ended first.
	case raftpb.MsgReadIndex, raftpb.MsgReadIndexResp:
		if m.Type == raftpb.MsgReadIndex {
			return nil // forwarded reads carry term 0, like proposals
		}
	case raftpb.MsgSnap:
		if err := p.validateSnapshot(msg); err != nil {
			return err
		}
	default:
		return fmt.Errorf("message type %v is not a network message", m.Type)
	}
	if m.Term == 0 {
		return fmt.Errorf("%v with term 0", m.Type)
	}
	return nil
}

// validateAppend checks what raft assumes of a MsgApp: entries follow
// (LogTerm, Index) contiguously with non-decreasing terms, none newer than
// the message's term.
func validateAppend(m *raftpb.Message) error {
	prevIndex, prevTerm := m.Index, m.LogTerm
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Index != prevIndex+1 || e.Term < prevTerm {
			return fmt.Errorf("MsgApp entry (%d, %d) does not follow (%d, %d)", e.Index, e.Term, prevIndex, prevTerm)
		}
		prevIndex, prevTerm = e.Index, e.Term
	}
	if m.Term < prevTerm {
		return fmt.Errorf("MsgApp of term %d carries entries of term %d", m.Term, prevTerm)
	}
	return nil
}

func (p *peer) isMember(peerID uint64) bool {
	if !p.ps.isInitialized() {
		return true // an uninitialized peer does not know the members yet
	}
	for _, pr := range p.region().Peers {
		if pr.Id == peerID {
			return true
		}
	}
	return false
}

// onCommand checks a command and proposes it (writes) or queues it for the
// next ReadIndex round (reads).
func (p *peer) onCommand(req *raft_cmdpb.RaftCmdRequest, cb Callback) {
	if err := p.checkCommand(req); err != nil {
		cb(errResult(err))
		return
	}
	if isReadCommand(req) {
		p.reads.fresh = append(p.reads.fresh, pendingRead{req: req, cb: cb})
		return
	}
	if req.AdminRequest != nil {
		p.flushProposals()
		switch req.AdminRequest.CmdType {
		case raft_cmdpb.AdminCmdType_TransferLeader:
			p.onTransferLeader(req, cb)
			return
		case raft_cmdpb.AdminCmdType_ChangePeer:
			p.proposeConfChange(req, cb)
			return
		case raft_cmdpb.AdminCmdType_Split:
			if err := p.checkSplit(req.AdminRequest.Split, p.region()); err != nil {
				cb(errResult(err))
				return
			}
			cb = p.leaseSplitting(cb)
		case raft_cmdpb.AdminCmdType_CompactLog:
		default:
			cb(errResult(fmt.Errorf("admin command %v is not supported", req.AdminRequest.CmdType)))
			return
		}
	}
	p.propose(req, cb)
}

// propose appends a command to the log as a normal entry; plain writes are
// merged with the others of the round into one entry.
func (p *peer) propose(req *raft_cmdpb.RaftCmdRequest, cb Callback) {
	if mergeable(req) {
		limit := min(cmdBatchMaxBytes, int(p.store.cfg.RaftEntryMaxSize)-proposalHeaderSize)
		if p.batch.cmds.add(req, cb, limit) {
			return
		}
		p.sealCmds()
		if p.batch.cmds.add(req, cb, limit) {
			return
		}
	} else {
		p.sealCmds()
	}
	p.proposeEntry(req, cb)
}

// sealCmds turns the merged writes into the batch's next entry.
func (p *peer) sealCmds() {
	if !p.batch.cmds.empty() {
		p.proposeEntry(p.batch.cmds.take())
	}
}

// proposeEntry encodes a command as the batch's next entry.
func (p *peer) proposeEntry(req *raft_cmdpb.RaftCmdRequest, cb Callback) {
	seq := p.seq()
	data, err := encodeProposal(p.meta.Id, seq, req)
	if err != nil {
		cb(errResult(err))
		return
	}
	if limit := p.store.cfg.RaftEntryMaxSize; uint64(len(data)) > limit {
		cb(errResult(&EntryTooLargeError{RegionID: p.regionID(), Size: uint64(len(data))}))
		return
	}
	p.batch.ents = append(p.batch.ents, raftpb.Entry{Type: raftpb.EntryNormal, Data: data})
	p.batch.props = append(p.batch.props, &proposal{seq: seq, tick: p.ticks, cb: cb})
}

// resetBatch empties the proposal batch, keeping its memory.
func (p *peer) resetBatch() {
	clear(p.batch.ents)
	clear(p.batch.props)
	p.batch.ents, p.batch.props = p.batch.ents[:0], p.batch.props[:0]
}

// flushProposals proposes the batched commands, in their order, as one
// MsgProp. Anything else that proposes (conf changes, the peer's own admin
// commands, leader transfers) flushes first, so the log keeps the order in
// which the peer received commands.
func (p *peer) flushProposals() {
	p.sealCmds()
	if len(p.batch.ents) == 0 {
		return
	}
	now := time.Now() // its commit renews the lease from here
	err := p.rn.Step(raftpb.Message{Type: raftpb.MsgProp, From: p.meta.Id, Entries: p.batch.ents})
	for _, pr := range p.batch.props {
		if err != nil {
			// Dropped, so nothing was appended and no command happened.
			pr.cb(errResult(p.proposeDroppedError()))
			continue
		}
		pr.at = now
		p.proposals.add(pr)
	}
	p.resetBatch()
}

// proposeDroppedError explains why raft refused a proposal.
func (p *peer) proposeDroppedError() error {
	st := p.rn.BasicStatus()
	switch {
	case st.RaftState != raft.StateLeader:
		return &NotLeaderError{RegionID: p.regionID(), Leader: p.peerCache[st.Lead]}
	case st.LeadTransferee != 0:
		return &ServerIsBusyError{Reason: fmt.Sprintf("region %d: leader transfer to peer %d in progress", p.regionID(), st.LeadTransferee)}
	default:
		return &ServerIsBusyError{Reason: fmt.Sprintf("region %d: too many uncommitted log entries", p.regionID())}
	}
}

// isReadCommand reports whether req only reads (Snap or Get requests).
func isReadCommand(req *raft_cmdpb.RaftCmdRequest) bool {
	if req.AdminRequest != nil || len(req.Requests) == 0 {
		return false
	}
	for _, r := range req.Requests {
		if r.CmdType != raft_cmdpb.CmdType_Snap && r.CmdType != raft_cmdpb.CmdType_Get {
			return false
		}
	}
	return true
}

// checkCommand runs the propose-time checks: right store and peer, leader,
// term, epoch and key range.
func (p *peer) checkCommand(req *raft_cmdpb.RaftCmdRequest) error {
	h := req.Header
	if h == nil {
		return fmt.Errorf("command without a header")
	}
	if h.Peer != nil {
		if h.Peer.StoreId != 0 && h.Peer.StoreId != p.meta.StoreId {
			return &StoreNotMatchError{RequestStoreID: h.Peer.StoreId, ActualStoreID: p.meta.StoreId}
		}
		if h.Peer.Id != 0 && h.Peer.Id != p.meta.Id {
			return fmt.Errorf("region %d: request for peer %d, this is peer %d", p.regionID(), h.Peer.Id, p.meta.Id)
		}
	}
	st := p.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		return &NotLeaderError{RegionID: p.regionID(), Leader: p.peerCache[st.Lead]}
	}
	if h.Term != 0 && h.Term != st.Term {
		return ErrStaleCommand
	}
	if err := checkEpoch(req, p.region()); err != nil {
		return p.withSiblings(err)
	}
	return checkKeys(req, p.region())
}

// withSiblings adds to an EpochNotMatch the regions this store holds right
// after this one (the halves of recent splits), so a client can refresh its
// cache in one step.
func (p *peer) withSiblings(err error) error {
	var e *EpochNotMatchError
	if !errors.As(err, &e) {
		return err
	}
	e.Regions = append(e.Regions, p.store.regionsAfter(p.region(), maxSiblings)...)
	return err
}

const maxSiblings = 4

// checkEpoch verifies the request's epoch against the region: normal requests
// must match the version (a split changes which keys the region holds).
func checkEpoch(req *raft_cmdpb.RaftCmdRequest, region *metapb.Region) error {
	want := req.Header.RegionEpoch
	if want == nil {
		return &EpochNotMatchError{Msg: "request has no region epoch", Regions: []*metapb.Region{region}}
	}
	checkVer, checkConf := epochChecks(req)
	cur := region.RegionEpoch
	if (checkVer && want.Version != cur.Version) || (checkConf && want.ConfVer != cur.ConfVer) {
		return &EpochNotMatchError{
			Msg: fmt.Sprintf("region %d epoch {conf_ver %d, version %d}, request has {conf_ver %d, version %d}",
				region.Id, cur.ConfVer, cur.Version, want.ConfVer, want.Version),
			Regions: []*metapb.Region{region},
		}
	}
	return nil
}

// epochChecks says which parts of the epoch a command must match (TiKV's
// ADMIN_CMD_EPOCH_MAP): normal requests depend on the key range (version);
// a conf change on the membership (conf_ver); a split and a leader transfer
// on both; CompactLog on neither.
func epochChecks(req *raft_cmdpb.RaftCmdRequest) (version, confVer bool) {
	if req.AdminRequest == nil {
		return true, false
	}
	switch req.AdminRequest.CmdType {
	case raft_cmdpb.AdminCmdType_ChangePeer:
		return false, true
	case raft_cmdpb.AdminCmdType_Split, raft_cmdpb.AdminCmdType_TransferLeader:
		return true, true
	}
	return false, false
}

// checkKeys verifies every request's column family and that its key (or
// range) lies in the region.
func checkKeys(req *raft_cmdpb.RaftCmdRequest, region *metapb.Region) error {
	for _, r := range req.Requests {
		if r.CmdType == raft_cmdpb.CmdType_Snap {
			continue
		}
		cf, key, ok := requestTarget(r)
		if !ok {
			return fmt.Errorf("invalid command type %v", r.CmdType)
		}
		if _, err := engine.CFByte(cf); err != nil {
			return err
		}
		if r.CmdType == raft_cmdpb.CmdType_DeleteRange {
			end := r.DeleteRange.GetEndKey()
			if len(end) > 0 && (bytes.Compare(end, key) < 0 || len(region.EndKey) > 0 && bytes.Compare(end, region.EndKey) > 0) {
				return &KeyNotInRegionError{Key: end, Region: region}
			}
		}
		if err := CheckKeyInRegion(key, region); err != nil {
			return err
		}
	}
	return nil
}

// requestTarget returns the column family and key (start key, for a range)
// of a data request; ok is false for other request types.
func requestTarget(r *raft_cmdpb.Request) (cf string, key []byte, ok bool) {
	switch r.CmdType {
	case raft_cmdpb.CmdType_Get:
		return r.Get.GetCf(), r.Get.GetKey(), true
	case raft_cmdpb.CmdType_Put:
		return r.Put.GetCf(), r.Put.GetKey(), true
	case raft_cmdpb.CmdType_Delete:
		return r.Delete.GetCf(), r.Delete.GetKey(), true
	case raft_cmdpb.CmdType_DeleteRange:
		return r.DeleteRange.GetCf(), r.DeleteRange.GetStartKey(), true
	}
	return "", nil, false
}

func errResult(err error) Result {
	return Result{Resp: &raft_cmdpb.RaftCmdResponse{Header: &raft_cmdpb.RaftResponseHeader{Error: ErrToPB(err)}}}
}

// onSoftState tracks leadership. Losing it fails every pending read (reads
// have no side effects, so failing them is always safe); pending proposals
// stay, since the next leader may still commit them.
func (p *peer) onSoftState(ss *raft.SoftState) {
	wasLeader := p.isLeader
	p.isLeader = ss.RaftState == raft.StateLeader
	p.leaderID = ss.Lead
	if !wasLeader && p.isLeader {
		// The new term's first entry goes out after this.
		p.lease = leaderLease{term: p.rn.BasicStatus().Term, since: time.Now(), notBefore: p.lease.notBefore, appliedTerm: p.lease.appliedTerm}
	}
	if wasLeader && !p.isLeader {
		p.endLease(0)
		err := &NotLeaderError{RegionID: p.regionID(), Leader: p.peerCache[ss.Lead]}
		p.reads.drain(func(r pendingRead) { r.cb(errResult(err)) })
	}
}

// send hands raft messages to the transport.
func (p *peer) send(msgs []raftpb.Message) {
	region := p.region()
	for i := range msgs {
		m := &msgs[i]
		if m.Type == raftpb.MsgTimeoutNow {
			// Its election ignores the followers' lease.
			p.endLease(p.transferHoldOff())
		}
		to := p.peerCache[m.To]
		if to == nil {
			p.log.Warn("no address for raft message", "to", m.To, "type", m.Type)
			continue
		}
		rm := &rspb.RaftMessage{
			RegionId:    region.Id,
			FromPeer:    p.meta,
			ToPeer:      to,
			Message:     m,
			RegionEpoch: region.RegionEpoch,
		}
		if isInitialMsg(m) {
			// Only these may create a peer on the receiving store, which
			// checks their range first (maybeCreatePeer); the rest need
			// not carry two keys each.
			rm.StartKey, rm.EndKey = region.StartKey, region.EndKey
		}
		if m.Type == raftpb.MsgSnap {
			p.store.sendSnapshot(rm)
			continue
		}
		if err := p.store.trans.Send(rm); err != nil {
			p.log.Debug("send raft message", "to", m.To, "type", m.Type, "err", err)
			p.unreachable = append(p.unreachable, m.To)
		}
	}
}

func (p *peer) publishStatus() {
	st := p.rn.BasicStatus()
	next := PeerStatus{
		RegionID:         p.regionID(),
		PeerID:           p.meta.Id,
		StoreID:          p.meta.StoreId,
		Region:           p.region(),
		RaftState:        st.RaftState,
		LeaderID:         st.Lead,
		Term:             st.Term,
		CommitIndex:      st.Commit,
		LastIndex:        p.ps.raftState.LastIndex,
		AppliedIndex:     p.ps.appliedIndex(),
		TruncatedIndex:   p.ps.truncatedIndex(),
		PendingProposals: p.proposals.len(),
		PendingReads:     p.reads.len(),
	}
	// Most rounds of an idle peer (a tick, a heartbeat) change nothing here.
	if cur := p.status.Load(); cur != nil && *cur == next {
		return
	}
	p.status.Store(&next)
}

// stop fails every pending callback; the peer is not used afterwards.
func (p *peer) stop(err error) {
	// Batched commands never reached raft: they did not happen.
	for _, pr := range p.batch.props {
		pr.cb(errResult(err))
	}
	p.resetBatch()
	p.batch.cmds.fail(errResult(err))
	p.endLease(0)
	p.proposals.drain(func(pr *proposal) { pr.cb(noAnswer(err)) })
	p.reads.drain(func(r pendingRead) { r.cb(noAnswer(err)) })
}
