package raftstore

import (
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
)

// cmdBatchMaxBytes bounds a merged command (see cmdBatch); the store's
// RaftEntryMaxSize bounds it further.
const cmdBatchMaxBytes = 256 << 10

// cmdBatch merges the plain write commands (puts and deletes) a leader
// receives in one round into a single RaftCmdRequest, so that a busy round
// costs one log entry on every replica and one decode at apply, however many
// clients wrote in it (TiKV batches RaftCmdRequests the same way). A merged
// command behaves like its parts proposed back to back in one entry: they
// share the propose-time and apply-time epoch checks, and they all apply or
// none does.
type cmdBatch struct {
	req    *raft_cmdpb.RaftCmdRequest
	cbs    []Callback
	counts []int // requests per callback, in order
	size   int   // encoded size of the commands so far (an upper bound)
}

// mergeable reports whether req may share an entry with other commands: a
// normal command of puts and deletes only. DeleteRange and admin commands go
// alone, keeping a merged entry's cost predictable.
func mergeable(req *raft_cmdpb.RaftCmdRequest) bool {
	if req.AdminRequest != nil || len(req.Requests) == 0 || req.Header.GetRegionEpoch() == nil {
		return false
	}
	for _, r := range req.Requests {
		if r.CmdType != raft_cmdpb.CmdType_Put && r.CmdType != raft_cmdpb.CmdType_Delete {
			return false
		}
	}
	return true
}

// add merges req into the batch and reports true, or reports false when req
// does not fit (the batch is full or was proposed under another epoch
// version); the caller then takes the batch and proposes req on its own.
func (b *cmdBatch) add(req *raft_cmdpb.RaftCmdRequest, cb Callback, limit int) bool {
	size := req.Size()
	if b.req == nil {
		if size > limit {
			return false
		}
		// Own a copy of the header and the request slice: req belongs to the
		// caller and may be retried.
		h := *req.Header
		b.req = &raft_cmdpb.RaftCmdRequest{Header: &h, Requests: append([]*raft_cmdpb.Request(nil), req.Requests...)}
	} else {
		if b.size+size > limit || req.Header.RegionEpoch.Version != b.req.Header.RegionEpoch.Version {
			return false
		}
		b.req.Requests = append(b.req.Requests, req.Requests...)
	}
	b.cbs = append(b.cbs, cb)
	b.counts = append(b.counts, len(req.Requests))
	b.size += size
	return true
}

func (b *cmdBatch) empty() bool { return b.req == nil }

// take empties the batch and returns the merged command and the callback
// that answers each part with its own responses.
func (b *cmdBatch) take() (*raft_cmdpb.RaftCmdRequest, Callback) {
	req, cbs, counts := b.req, b.cbs, b.counts
	*b = cmdBatch{}
	if len(cbs) == 1 {
		return req, cbs[0]
	}
	return req, func(res Result) { splitResult(res, cbs, counts) }
}

// fail answers every batched command with res; they never reached raft.
func (b *cmdBatch) fail(res Result) {
	for _, cb := range b.cbs {
		cb(res)
	}
	*b = cmdBatch{}
}

// splitResult answers the parts of a merged command. A region error, a
// missing answer or a response of the wrong shape goes to every part as it
// is; a success gives each part its slice of the responses. Results are
// read-only once delivered, so the parts share the header.
func splitResult(res Result, cbs []Callback, counts []int) {
	total := 0
	for _, n := range counts {
		total += n
	}
	if res.Resp == nil || res.Resp.GetHeader().GetError() != nil || len(res.Resp.Responses) != total {
		for _, cb := range cbs {
			cb(res)
		}
		return
	}
	off := 0
	for i, cb := range cbs {
		n := counts[i]
		cb(Result{Resp: &raft_cmdpb.RaftCmdResponse{Header: res.Resp.Header, Responses: res.Resp.Responses[off : off+n : off+n]}})
		off += n
	}
}
