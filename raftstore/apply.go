package raftstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/gogo/protobuf/proto"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
)

// kvWriter is the kv DB write transaction of one worker round: every peer the
// worker touched applies its committed entries into it, and it commits once.
// Reads through it see its own pending writes, so a DeleteRange sees the
// Puts applied before it in the same round.
//
// A round too big for one Badger transaction is committed in parts, and a
// round of raw writes need not carry the RaftApplyState (applyEntries). Both
// are safe because raw writes (Put, Delete, DeleteRange) are blind: each
// sets its keys whatever they held. Applying the entries past the durable
// RaftApplyState again, in order, on top of a state that already has some of
// them, ends in the same state as applying them once.
//
// A value of the kv DB's ValueThreshold or more (1 MiB by default) goes
// to Badger's value log, and only its pointer to the memtable's log beside
// the RaftApplyState; the kernel writes those two logs back in any order.
// So that a durable apply state never covers a value a power loss took, an
// entry that wrote such a value is committed and synced before the next
// entry applies (syncSeparated), and an admin entry's apply state is
// written right after its effects, so that such a commit never separates
// them (a transaction that outgrows Badger's limit just there still does).
// A memtable log that Badger rotated out is not synced until SyncKV, which
// leaves a gap of the same kind (docs/ARCHITECTURE.md, Decisions).
type kvWriter struct {
	db    *badger.DB
	txn   *badger.Txn
	stats *storeStats

	valueThreshold int          // the kv DB's ValueThreshold
	syncKV         func() error // engine.Engines.SyncKV
	separated      bool         // a value went to the value log since the last sync
}

func newKVWriter(db *badger.DB, syncKV func() error, stats *storeStats) *kvWriter {
	return &kvWriter{db: db, stats: stats, valueThreshold: int(db.Opts().ValueThreshold), syncKV: syncKV}
}

func (w *kvWriter) ensure() {
	if w.txn == nil {
		w.txn = w.db.NewTransaction(true)
	}
}

func (w *kvWriter) set(key, val []byte) { w.write(key, val, false) }
func (w *kvWriter) delete(key []byte)   { w.write(key, nil, true) }

func (w *kvWriter) setMsg(key []byte, msg proto.Message) {
	val, err := proto.Marshal(msg)
	if err != nil {
		panic(fmt.Sprintf("raftstore: marshal %T: %v", msg, err))
	}
	w.set(key, val)
}

func (w *kvWriter) write(key, val []byte, del bool) {
	w.ensure()
	for attempt := 0; ; attempt++ {
		var err error
		if del {
			err = w.txn.Delete(key)
		} else {
			err = w.txn.Set(key, val)
		}
		if err == nil {
			w.separated = w.separated || len(val) >= w.valueThreshold
			return
		}
		if errors.Is(err, badger.ErrTxnTooBig) && attempt == 0 {
			w.commit()
			w.ensure()
			continue
		}
		fatalf("kv write of %d bytes: %v", len(key)+len(val), err)
	}
}

// deleteRange deletes every key in [lo, hi).
func (w *kvWriter) deleteRange(lo, hi []byte) {
	w.ensure()
	var keys [][]byte
	it := engine.NewRangeIter(w.txn, lo, hi, false, true)
	for ; it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		w.delete(k)
	}
}

// commit makes the round's writes visible. It does not fsync: the raft log,
// already durable, can replay them.
func (w *kvWriter) commit() {
	if w.txn == nil {
		return
	}
	start := time.Now()
	err := w.txn.Commit()
	w.txn = nil
	if err != nil {
		fatalf("kv commit: %v", err)
	}
	w.stats.kvCommits.Add(1)
	w.stats.kvCommitNanos.Add(uint64(time.Since(start)))
}

// syncSeparated commits the transaction and syncs the kv DB if the
// transaction holds a value that went to the value log.
func (w *kvWriter) syncSeparated() {
	if !w.separated {
		return
	}
	w.commit()
	if err := w.syncKV(); err != nil {
		fatalf("kv sync after a value log write: %v", err)
	}
	w.separated = false
	w.stats.valueLogSyncs.Add(1)
}

// fatalf stops the process on a storage error: raft cannot continue past a
// write it was told succeeded, so there is nothing safe left to do.
func fatalf(format string, args ...any) {
	panic(fmt.Sprintf("raftstore: fatal storage error: "+format, args...))
}

// appliedCallback is a callback to fire once the round's kv writes commit.
type appliedCallback struct {
	cb  Callback
	res Result
}

// applyEntries applies committed entries to the kv writer and records the
// callbacks of proposals they answer.
func (p *peer) applyEntries(w *kvWriter, ents []raftpb.Entry, done []appliedCallback) []appliedCallback {
	if len(ents) == 0 {
		return done
	}
	stale := func(pr *proposal) { done = append(done, appliedCallback{pr.cb, errResult(ErrStaleCommand)}) }
	term := p.rn.BasicStatus().Term
	// mustPersist: an entry other than raw writes applied, and the apply
	// state must reach the kv DB with its effects (see below).
	mustPersist := false
	for i := range ents {
		e := &ents[i]
		p.lease.appliedTerm = e.Term
		switch e.Type {
		case raftpb.EntryNormal:
			if len(e.Data) == 0 {
				// A new leader's no-op: it takes a slot any older proposal of
				// this peer was waiting for.
				p.proposals.resolve(e.Index, e.Term, 0, false, stale)
				if e.Term == term {
					p.renewLease(p.lease.since)
				}
				break
			}
			proposer, seq, cmd, err := decodeProposal(e.Data)
			if err != nil {
				panic(fmt.Sprintf("%s: undecodable committed entry %d: %v", p.ps.tag, e.Index, err))
			}
			admin := cmd.AdminRequest != nil
			mustPersist = mustPersist || admin
			ours := proposer == p.meta.Id
			// Only a proposal of this peer has a callback to answer.
			resp := p.applyCommand(w, cmd, ours)
			if admin {
				p.persistApplyState(w, e.Index) // with its effects (kvWriter)
			} else {
				w.syncSeparated()
			}
			if pr := p.proposals.resolve(e.Index, e.Term, seq, ours, stale); pr != nil {
				done = append(done, appliedCallback{pr.cb, Result{Resp: resp}})
				if e.Term == term {
					p.renewLease(pr.at)
				}
			}
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := cc.Unmarshal(e.Data); err != nil {
				panic(fmt.Sprintf("%s: undecodable conf change %d: %v", p.ps.tag, e.Index, err))
			}
			proposer, seq, cmd, err := decodeProposal(cc.Context)
			if err != nil || cmd.AdminRequest.GetChangePeer() == nil {
				panic(fmt.Sprintf("%s: conf change %d without a ChangePeer command: %v", p.ps.tag, e.Index, err))
			}
			mustPersist = true
			resp := p.applyConfChange(w, &cc, cmd)
			p.persistApplyState(w, e.Index)
			if pr := p.proposals.resolve(e.Index, e.Term, seq, proposer == p.meta.Id, stale); pr != nil {
				done = append(done, appliedCallback{pr.cb, Result{Resp: resp}})
			}
		default:
			// regionkv proposes only ConfChange (V1); a V2 entry means a
			// different writer shared this log.
			panic(fmt.Sprintf("%s: committed entry %d of unexpected type %v", p.ps.tag, e.Index, e.Type))
		}
		p.ps.applyState.AppliedIndex = e.Index
		if p.pendingDestroy {
			// Entries after our own removal are not ours to apply.
			mustPersist = true
			break
		}
	}
	if applied := p.ps.applyState.AppliedIndex; mustPersist || applied-p.ps.persistedApplied >= applyStateInterval {
		p.persistApplyState(w, applied)
	}
	return done
}

// persistApplyState writes the peer's RaftApplyState, applied up to index,
// into w.
func (p *peer) persistApplyState(w *kvWriter, index uint64) {
	p.ps.applyState.AppliedIndex = index
	w.setMsg(engine.ApplyStateKey(p.regionID()), &p.ps.applyState)
	p.ps.persistedApplied = index
}

// applyStateInterval is how many entries of raw writes a region applies
// before its RaftApplyState is written again. Writing it every round was a
// third of a store's kv DB inserts with 16 busy regions (one per region per
// round, against about two applied values), and each insert is a search of
// a large memtable skiplist.
//
// Admin commands (split, CompactLog), conf changes, snapshots and a peer's
// removal write it at once: they change the region, the peer or the
// truncated state, and replaying them would not be idempotent. So the
// durable applied index never trails one of them, it is never below the
// truncated index (log GC never deletes an entry that a restart would apply
// again), and a restart applies at most this many raw-write entries per
// region again (kvWriter says why that is safe).
const applyStateInterval = 64

// applyCommand applies a normal command. The epoch and keys are checked again:
// the region may have changed between propose and apply. Without wantResp
// (no callback will see it) a successful write's response is nil.
func (p *peer) applyCommand(w *kvWriter, cmd *raft_cmdpb.RaftCmdRequest, wantResp bool) *raft_cmdpb.RaftCmdResponse {
	if cmd.AdminRequest != nil {
		return p.applyAdmin(w, cmd)
	}
	region := p.region()
	if err := checkEpoch(cmd, region); err != nil {
		return errResult(p.withSiblings(err)).Resp
	}
	if err := checkKeys(cmd, region); err != nil {
		return errResult(err).Resp
	}
	var resp *raft_cmdpb.RaftCmdResponse
	if wantResp {
		resp = &raft_cmdpb.RaftCmdResponse{
			Header:    &raft_cmdpb.RaftResponseHeader{CurrentTerm: p.rn.BasicStatus().Term},
			Responses: make([]*raft_cmdpb.Response, 0, len(cmd.Requests)),
		}
	}
	for _, r := range cmd.Requests {
		switch r.CmdType {
		case raft_cmdpb.CmdType_Put:
			cf := mustCF(r.Put.Cf)
			w.set(engine.DataKey(cf, r.Put.Key), r.Put.Value)
			if wantResp {
				resp.Responses = append(resp.Responses, &raft_cmdpb.Response{CmdType: r.CmdType, Put: &raft_cmdpb.PutResponse{}})
			}
		case raft_cmdpb.CmdType_Delete:
			cf := mustCF(r.Delete.Cf)
			w.delete(engine.DataKey(cf, r.Delete.Key))
			if wantResp {
				resp.Responses = append(resp.Responses, &raft_cmdpb.Response{CmdType: r.CmdType, Delete: &raft_cmdpb.DeleteResponse{}})
			}
		case raft_cmdpb.CmdType_DeleteRange:
			cf := mustCF(r.DeleteRange.Cf)
			start, end := clipToRegion(r.DeleteRange.StartKey, r.DeleteRange.EndKey, region)
			lo, hi := engine.DataRange(cf, start, end)
			w.deleteRange(lo, hi)
			if wantResp {
				resp.Responses = append(resp.Responses, &raft_cmdpb.Response{CmdType: r.CmdType, DeleteRange: &raft_cmdpb.DeleteRangeResponse{}})
			}
		default:
			// Reads never enter the log; checkKeys rejected anything else.
			panic(fmt.Sprintf("%s: committed command of type %v", p.ps.tag, r.CmdType))
		}
	}
	return resp
}

// mustCF maps a column family validated at propose time.
func mustCF(cf string) byte {
	b, err := engine.CFByte(cf)
	if err != nil {
		panic(fmt.Sprintf("raftstore: committed command with %v", err))
	}
	return b
}
