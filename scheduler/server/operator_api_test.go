package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// TestOperatorAPI adds operators by hand through the status API and checks
// the steps the region's leader gets in heartbeat responses, the errors of
// bad requests, and cancellation.
func TestOperatorAPI(t *testing.T) {
	cfg := testConfig(t, "s1")
	cfg.Schedulers = "none"
	s := startServer(t, cfg, testLogger(t))
	waitLeader(t, s)
	cli, _ := dial(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	members := mustOK(t, res(cli.GetMembers(ctx, &schedulerpb.GetMembersRequest{})))
	hdr := &schedulerpb.RequestHeader{ClusterId: members.Header.ClusterId}

	// Four stores; region on the first three, led by the first.
	var stores []uint64
	var peers []*metapb.Peer
	for i := range 4 {
		stores = append(stores, allocID(ctx, t, cli, hdr))
		if i < 3 {
			peers = append(peers, &metapb.Peer{Id: allocID(ctx, t, cli, hdr), StoreId: stores[i]})
		}
	}
	regionID := allocID(ctx, t, cli, hdr)
	mustOK(t, res(cli.Bootstrap(ctx, &schedulerpb.BootstrapRequest{Header: hdr,
		Store: &metapb.Store{Id: stores[0], Address: "127.0.0.1:1"}, Region: region(regionID, "", "", 1, 1, peers[0])})))
	r := region(regionID, "", "", 3, 1, peers...)
	for i, id := range stores {
		mustOK(t, res(cli.PutStore(ctx, &schedulerpb.PutStoreRequest{Header: hdr, Store: &metapb.Store{Id: id, Address: fmt.Sprintf("127.0.0.1:%d", i+1)}})))
		mustOK(t, res(cli.StoreHeartbeat(ctx, &schedulerpb.StoreHeartbeatRequest{Header: hdr, Stats: &schedulerpb.StoreStats{StoreId: id}})))
	}
	stream, err := cli.RegionHeartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	heartbeat := func(r *metapb.Region, leader *metapb.Peer) {
		t.Helper()
		if err := stream.Send(&schedulerpb.RegionHeartbeatRequest{Header: hdr, Region: r, Leader: leader, Term: 6}); err != nil {
			t.Fatal(err)
		}
	}
	// step sends a heartbeat and returns the step that answers it.
	step := func(r *metapb.Region, leader *metapb.Peer) *schedulerpb.RegionHeartbeatResponse {
		t.Helper()
		heartbeat(r, leader)
		resp, err := stream.Recv()
		if err != nil || resp.Header.GetError() != nil {
			t.Fatalf("heartbeat answer %v, %v", resp, err)
		}
		return resp
	}
	heartbeat(r, peers[0])
	for { // wait until the scheduler knows the leader
		if _, leader, _ := regionOf(ctx, cli, hdr, regionID); leader.GetId() == peers[0].Id {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	base := "http://" + s.StatusAddr() + "/api/v1/operators"
	post := func(body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(base, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("POST %s: %v in %s", body, err, b)
		}
		return resp.StatusCode, out
	}
	mustAdd := func(body string) {
		t.Helper()
		if code, out := post(body); code != http.StatusCreated {
			t.Fatalf("POST %s = %d %v", body, code, out)
		}
	}

	// Bad requests.
	for body, want := range map[string]int{
		`{"type":"transfer-leader","region_id":424242,"store_id":1}`:                                404,
		`{"type":"jump","region_id":` + fmt.Sprint(regionID) + `}`:                                  400,
		`{"region_id":` + fmt.Sprint(regionID) + `}`:                                                400,
		`{"type":"transfer-leader"}`:                                                                400,
		`{"type":"transfer-leader","region_id":` + fmt.Sprint(regionID) + `}`:                       400,
		fmt.Sprintf(`{"type":"transfer-leader","region_id":%d,"store_id":%d}`, regionID, stores[0]): 400, // already leads
		fmt.Sprintf(`{"type":"transfer-leader","region_id":%d,"store_id":%d}`, regionID, stores[3]): 400, // no peer there
		fmt.Sprintf(`{"type":"add-peer","region_id":%d,"store_id":%d}`, regionID, stores[1]):        400, // has one
		fmt.Sprintf(`{"type":"add-peer","region_id":%d,"store_id":99999}`, regionID):                400,
		fmt.Sprintf(`{"type":"remove-peer","region_id":%d,"store_id":%d}`, regionID, stores[3]):     400,
		fmt.Sprintf(`{"type":"split-region","region_id":%d,"key":"zz"}`, regionID):                  400, // bad hex
		fmt.Sprintf(`{"type":"split-region","region_id":%d,"key":""}`, regionID) + "x":              400, // bad JSON
		`{"type":"transfer-leader","region_id":1,"to":2}`:                                           400, // unknown field
	} {
		if code, out := post(body); code != want || out["error"] == nil {
			t.Errorf("POST %s = %d %v, want %d and an error", body, code, out, want)
		}
	}

	// transfer-leader: the leader is asked to hand over; the operator ends
	// when a heartbeat shows the new leader.
	mustAdd(fmt.Sprintf(`{"type":"transfer-leader","region_id":%d,"store_id":%d}`, regionID, stores[2]))
	if code, _ := post(fmt.Sprintf(`{"type":"transfer-leader","region_id":%d,"store_id":%d}`, regionID, stores[1])); code != http.StatusConflict {
		t.Errorf("second operator on the region: %d, want 409", code)
	}
	if got := step(r, peers[0]); got.TransferLeader.GetPeer().GetId() != peers[2].Id {
		t.Fatalf("transfer-leader step %v", got)
	}
	heartbeat(r, peers[2]) // done: no answer
	waitOperators(t, s, 0)

	// The replica checker would undo what add-peer and remove-peer do.
	maxReplicas := func(n uint32) {
		t.Helper()
		mustOK(t, res(cli.PutClusterConfig(ctx, &schedulerpb.PutClusterConfigRequest{Header: hdr,
			Config: &schedulerpb.ClusterConfig{MaxReplicas: n, MaxStoreDownTimeMs: 3600_000}})))
	}

	// add-peer: add a learner on store 4, then promote it.
	maxReplicas(4)
	mustAdd(fmt.Sprintf(`{"type":"add-peer","region_id":%d,"store_id":%d}`, regionID, stores[3]))
	got := step(r, peers[2])
	learner := got.ChangePeer.GetPeer()
	if got.ChangePeer.GetChangeType() != raft_cmdpb.ConfChangeType_AddLearnerNode || learner.GetStoreId() != stores[3] {
		t.Fatalf("add-peer first step %v", got)
	}
	r = region(regionID, "", "", 4, 1, append(peers, learner)...)
	if got := step(r, peers[2]); got.ChangePeer.GetChangeType() != raft_cmdpb.ConfChangeType_AddNode {
		t.Fatalf("add-peer second step %v", got)
	}
	voter := &metapb.Peer{Id: learner.Id, StoreId: learner.StoreId}
	r = region(regionID, "", "", 5, 1, append(peers, voter)...)
	heartbeat(r, peers[2])
	waitOperators(t, s, 0)

	// remove-peer of the leader: leadership moves first.
	maxReplicas(3)
	mustAdd(fmt.Sprintf(`{"type":"remove-peer","region_id":%d,"store_id":%d}`, regionID, stores[2]))
	if got := step(r, peers[2]); got.TransferLeader == nil || got.TransferLeader.Peer.StoreId == stores[2] {
		t.Fatalf("remove-peer first step %v", got)
	}
	if got := step(r, peers[0]); got.ChangePeer.GetChangeType() != raft_cmdpb.ConfChangeType_RemoveNode || got.ChangePeer.Peer.Id != peers[2].Id {
		t.Fatalf("remove-peer second step %v", got)
	}
	r = region(regionID, "", "", 6, 1, peers[0], peers[1], voter)
	heartbeat(r, peers[0])
	waitOperators(t, s, 0)

	// split-region at a key: the split ends the operator (finished, not
	// cancelled, although the version changed).
	mustAdd(fmt.Sprintf(`{"type":"split-region","region_id":%d,"key":"6d"}`, regionID))
	if got := step(r, peers[0]); got.SplitRegion.GetPolicy() != schedulerpb.SplitPolicy_USE_KEYS || string(got.SplitRegion.Keys[0]) != "m" {
		t.Fatalf("split step %v", got)
	}
	r = region(regionID, "", "m", 6, 2, peers[0], peers[1], voter)
	heartbeat(r, peers[0])
	waitOperators(t, s, 0)
	if code, out := post(fmt.Sprintf(`{"type":"split-region","region_id":%d,"key":"7a"}`, regionID)); code != 400 {
		t.Errorf("split outside the region = %d %v, want 400", code, out)
	}

	// Cancel.
	mustAdd(fmt.Sprintf(`{"type":"split-region","region_id":%d}`, regionID))
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/%d", base, regionID), nil)
	for _, want := range []int{200, 404} {
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("DELETE operator: %v %v, want %d", resp, err, want)
		}
		resp.Body.Close()
	}
	var ops struct {
		History []struct {
			Desc   string `json:"desc"`
			Status string `json:"status"`
		} `json:"history"`
	}
	httpGetJSON(t, base, &ops)
	var statuses []string
	for _, h := range ops.History {
		statuses = append(statuses, h.Status)
	}
	if want := "finished,finished,finished,finished,cancelled"; strings.Join(statuses, ",") != want {
		t.Errorf("operator history %v, want %s", ops.History, want)
	}
}

func regionOf(ctx context.Context, cli schedulerpb.SchedulerClient, hdr *schedulerpb.RequestHeader, id uint64) (*metapb.Region, *metapb.Peer, error) {
	resp, err := cli.GetRegionByID(ctx, &schedulerpb.GetRegionByIDRequest{Header: hdr, RegionId: id})
	return resp.GetRegion(), resp.GetLeader(), err
}

// waitOperators waits until n operators are running.
func waitOperators(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ops struct {
			Running []any `json:"running"`
		}
		httpGetJSON(t, "http://"+s.StatusAddr()+"/api/v1/operators", &ops)
		if len(ops.Running) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d operators running, want %d: %v", len(ops.Running), n, ops.Running)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
