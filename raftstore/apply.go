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
// split or conf change commits what came before it (syncApplied). Raw
// writes may be split across parts, which a restart may apply again
// (kv_sync.go); a split's or conf change's effects and apply state start a
// fresh transaction, small enough to stay whole.
type kvWriter struct {
	db    *badger.DB
	txn   *badger.Txn
	stats *storeStats
}

func newKVWriter(db *badger.DB, stats *storeStats) *kvWriter { return &kvWriter{db: db, stats: stats} }

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

// commit makes the writes so far visible to every transaction begun after
// it returns, which is all that answering them needs: a read that starts
// after the answer sees them. It hands them to Badger's writer and does not
// wait for them to reach the memtable; Badger makes any later transaction,
// including this worker's next one, wait for that (engine.WaitCommitted),
// so the worker's wait moves from the end of this round to its next write,
// while it takes in messages, collects Readies and starts the raft log's
// fsync. A sync (Engines.SyncKV) waits for them too. It does not fsync:
// the raft log, already durable, can replay them.
func (w *kvWriter) commit() {
	if w.txn == nil {
		return
	}
	start := time.Now()
	stats := w.stats
	w.txn.CommitWith(func(err error) {
		if err != nil {
			fatalf("kv commit: %v", err)
		}
		stats.kvCommits.Add(1)
		stats.kvCommitNanos.Add(uint64(time.Since(start)))
	})
	w.txn = nil
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
// callbacks of proposals they answer. Raw writes leave the durable apply
// state to a checkpoint; a split or conf change is synced after what came
// before it and written with its apply state (kv_sync.go).
func (p *peer) applyEntries(w *kvWriter, ents []raftpb.Entry, done []appliedCallback) []appliedCallback {
	if len(ents) == 0 {
		return done
	}
	stale := func(pr *proposal) { done = append(done, appliedCallback{pr.cb, errResult(ErrStaleCommand)}) }
	term := p.rn.BasicStatus().Term
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
			// CompactLog moves only the truncated state, which checkpoints
			// carry; other admin commands change the region.
			changesRegion := cmd.AdminRequest != nil && cmd.AdminRequest.CmdType != raft_cmdpb.AdminCmdType_CompactLog
			if changesRegion {
				p.syncApplied(w)
			}
			ours := proposer == p.meta.Id
			// Only a proposal of this peer has a callback to answer.
			resp := p.applyCommand(w, cmd, ours)
			if changesRegion {
				p.persistApplyState(w, e.Index)
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
			p.syncApplied(w)
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
			// Entries after our own removal are not ours to apply; the
			// peer's destruction deletes its state.
			break
		}
	}
	return done
}

// syncApplied commits w and syncs the kv DB, so that everything applied
// before the entry about to be applied is durable, whatever becomes of the
// transaction that entry starts.
func (p *peer) syncApplied(w *kvWriter) {
	w.commit()
	p.store.kvSync.sync()
}

// persistApplyState writes the peer's RaftApplyState, applied up to index,
// into w.
func (p *peer) persistApplyState(w *kvWriter, index uint64) {
	p.ps.applyState.AppliedIndex = index
	w.setMsg(engine.ApplyStateKey(p.regionID()), &p.ps.applyState)
	p.ps.notePersisted(&p.ps.applyState)
}

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
