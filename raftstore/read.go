package raftstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/regionkv/regionkv/proto/raft_cmdpb"
)

// errReadIndexTimeout fails reads whose ReadIndex round got no answer.
var errReadIndexTimeout = errors.New("raftstore: read index timed out")

// pendingRead is one read command waiting for a linearizable point.
type pendingRead struct {
	req *raft_cmdpb.RaftCmdRequest
	cb  Callback
}

// readBatch is the reads that share one ReadIndex request.
type readBatch struct {
	ctx   uint64
	tick  uint64    // when it was issued, in ticks
	at    time.Time // and in time
	index uint64    // the read index; 0 until the ReadState arrives
	reads []pendingRead
}

// readQueue batches linearizable reads: every read that arrives in one
// worker round joins one ReadIndex request with a unique context.
type readQueue struct {
	fresh   []pendingRead // arrived this round, not issued yet
	batches []*readBatch  // issued, in order
}

func readCtx(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// issue moves the fresh reads into a batch with context ctx.
func (q *readQueue) issue(ctx, tick uint64) {
	q.batches = append(q.batches, &readBatch{ctx: ctx, tick: tick, at: time.Now(), reads: q.fresh})
	q.fresh = nil
}

// onReadState records the read index for the batch with context ctx and
// returns when that batch was issued (zero if it is not pending).
func (q *readQueue) onReadState(ctx []byte, index uint64) time.Time {
	if len(ctx) != 8 {
		return time.Time{}
	}
	id := binary.BigEndian.Uint64(ctx)
	for _, b := range q.batches {
		if b.ctx == id {
			b.index = index
			return b.at
		}
	}
	return time.Time{}
}

// takeReady removes and returns the reads whose index is <= applied.
func (q *readQueue) takeReady(applied uint64, out []pendingRead) []pendingRead {
	kept := q.batches[:0]
	for _, b := range q.batches {
		if b.index != 0 && b.index <= applied {
			out = append(out, b.reads...)
			continue
		}
		kept = append(kept, b)
	}
	clear(q.batches[len(kept):])
	q.batches = kept
	return out
}

// expire removes batches issued more than maxAge ticks ago.
func (q *readQueue) expire(now, maxAge uint64, fail func(pendingRead)) {
	kept := q.batches[:0]
	for _, b := range q.batches {
		if now-b.tick > maxAge {
			for _, r := range b.reads {
				fail(r)
			}
			continue
		}
		kept = append(kept, b)
	}
	clear(q.batches[len(kept):])
	q.batches = kept
}

// drain removes every pending read.
func (q *readQueue) drain(fail func(pendingRead)) {
	for _, r := range q.fresh {
		fail(r)
	}
	for _, b := range q.batches {
		for _, r := range b.reads {
			fail(r)
		}
	}
	q.fresh, q.batches = nil, nil
}

func (q *readQueue) len() int {
	n := len(q.fresh)
	for _, b := range q.batches {
		n += len(b.reads)
	}
	return n
}
