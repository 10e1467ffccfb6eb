package raftstore

import (
	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
)

// Result is the outcome of a command. A region error, if any, is in
// Resp.Header.Error. Snap is set only for a successful Snap request; whoever
// receives it must Close it.
//
// Err is set instead of Resp when there is no answer: the store stopped
// (ErrStoreStopped) or the proposal's fate is unknown (ErrProposalUnknown).
// A write that ends with Err may or may not have been applied.
type Result struct {
	Resp *raft_cmdpb.RaftCmdResponse
	Snap *RegionSnapshot
	Err  error
}

// RegionError returns the region error of the result, or nil.
func (r Result) RegionError() *errorpb.Error { return r.Resp.GetHeader().GetError() }

func noAnswer(err error) Result { return Result{Err: err} }

// Callback receives a command's Result. It is called exactly once, from a
// raft worker, and must not block.
type Callback func(Result)
