package raftstore

import (
	"errors"
	"testing"

	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
)

func writeCmd(version uint64, keys ...string) *raft_cmdpb.RaftCmdRequest {
	req := &raft_cmdpb.RaftCmdRequest{Header: &raft_cmdpb.RaftRequestHeader{
		RegionId: 1, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: version}}}
	for _, k := range keys {
		if k[0] == '-' {
			req.Requests = append(req.Requests, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Delete,
				Delete: &raft_cmdpb.DeleteRequest{Key: []byte(k[1:])}})
			continue
		}
		req.Requests = append(req.Requests, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Put,
			Put: &raft_cmdpb.PutRequest{Key: []byte(k), Value: []byte("v")}})
	}
	return req
}

// answer applies a merged command the way applyCommand answers success.
func answer(req *raft_cmdpb.RaftCmdRequest) Result {
	resp := &raft_cmdpb.RaftCmdResponse{Header: &raft_cmdpb.RaftResponseHeader{CurrentTerm: 7}}
	for _, r := range req.Requests {
		resp.Responses = append(resp.Responses, &raft_cmdpb.Response{CmdType: r.CmdType})
	}
	return Result{Resp: resp}
}

func TestMergeable(t *testing.T) {
	if !mergeable(writeCmd(1, "a", "-b")) {
		t.Error("puts and deletes are mergeable")
	}
	dr := writeCmd(1)
	dr.Requests = []*raft_cmdpb.Request{{CmdType: raft_cmdpb.CmdType_DeleteRange, DeleteRange: &raft_cmdpb.DeleteRangeRequest{}}}
	admin := writeCmd(1)
	admin.AdminRequest = &raft_cmdpb.AdminRequest{CmdType: raft_cmdpb.AdminCmdType_CompactLog}
	noEpoch := writeCmd(1, "a")
	noEpoch.Header.RegionEpoch = nil
	for name, req := range map[string]*raft_cmdpb.RaftCmdRequest{
		"delete range": dr, "admin": admin, "empty": writeCmd(1), "no epoch": noEpoch,
	} {
		if mergeable(req) {
			t.Errorf("%s command is mergeable", name)
		}
	}
}

func TestCmdBatchSplitsResponses(t *testing.T) {
	var b cmdBatch
	got := make([][]raft_cmdpb.CmdType, 3)
	for i, req := range []*raft_cmdpb.RaftCmdRequest{writeCmd(4, "a"), writeCmd(4, "-b", "c"), writeCmd(4, "d")} {
		i := i
		if !b.add(req, func(res Result) {
			if res.Resp.Header.CurrentTerm != 7 {
				t.Errorf("part %d lost the header", i)
			}
			for _, r := range res.Resp.Responses {
				got[i] = append(got[i], r.CmdType)
			}
		}, 1<<20) {
			t.Fatalf("command %d did not fit", i)
		}
	}
	req, cb := b.take()
	if !b.empty() {
		t.Fatal("take left the batch full")
	}
	if len(req.Requests) != 4 || string(req.Requests[3].Put.Key) != "d" {
		t.Fatalf("merged %v", req.Requests)
	}
	cb(answer(req))
	put, del := raft_cmdpb.CmdType_Put, raft_cmdpb.CmdType_Delete
	want := [][]raft_cmdpb.CmdType{{put}, {del, put}, {put}}
	for i := range want {
		if len(got[i]) != len(want[i]) || (len(got[i]) > 0 && got[i][0] != want[i][0]) {
			t.Errorf("part %d got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestCmdBatchErrorsReachEveryPart(t *testing.T) {
	for name, res := range map[string]Result{
		"region error": {Resp: &raft_cmdpb.RaftCmdResponse{Header: &raft_cmdpb.RaftResponseHeader{
			Error: &errorpb.Error{Message: "epoch not match", EpochNotMatch: &errorpb.EpochNotMatch{}}}}},
		"no answer": noAnswer(ErrProposalUnknown),
	} {
		var b cmdBatch
		var n int
		for range 3 {
			b.add(writeCmd(1, "k"), func(r Result) {
				if r.RegionError() == nil && !errors.Is(r.Err, ErrProposalUnknown) {
					t.Errorf("%s: a part got %+v", name, r)
				}
				n++
			}, 1<<20)
		}
		_, cb := b.take()
		cb(res)
		if n != 3 {
			t.Errorf("%s: %d of 3 parts answered", name, n)
		}
	}

	var b cmdBatch
	n := 0
	for range 2 {
		b.add(writeCmd(1, "k"), func(r Result) { n++ }, 1<<20)
	}
	b.fail(errResult(ErrStaleCommand))
	if n != 2 || !b.empty() {
		t.Errorf("fail answered %d of 2 parts", n)
	}
}

func TestCmdBatchBounds(t *testing.T) {
	var b cmdBatch
	one := writeCmd(2, "key")
	limit := 3 * one.Size()
	for i := range 3 {
		if !b.add(writeCmd(2, "key"), func(Result) {}, limit) {
			t.Fatalf("command %d did not fit under the limit", i)
		}
	}
	if b.add(writeCmd(2, "key"), func(Result) {}, limit) {
		t.Error("the batch grew past its limit")
	}
	if b.add(writeCmd(3, "k"), func(Result) {}, 1<<20) {
		t.Error("a command of another epoch version was merged")
	}
	var c cmdBatch
	if c.add(writeCmd(2, "key"), func(Result) {}, one.Size()-1) {
		t.Error("a command larger than the limit started a batch")
	}
	// A batch of one hands back the caller's callback untouched.
	var d cmdBatch
	called := false
	d.add(one, func(Result) { called = true }, limit)
	req, cb := d.take()
	cb(answer(req))
	if !called || len(req.Requests) != 1 {
		t.Error("a batch of one did not answer its command")
	}
	// The caller's request is not changed by later merges.
	var e cmdBatch
	first := writeCmd(2, "a")
	e.add(first, func(Result) {}, 1<<20)
	e.add(writeCmd(2, "b"), func(Result) {}, 1<<20)
	if len(first.Requests) != 1 {
		t.Error("merging changed the first caller's request")
	}
}
