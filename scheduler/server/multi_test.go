package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// TestThreeMembers starts a three-member scheduler: one leads, the others
// answer NOT_LEADER naming it and redirect status calls; when the leader
// stops, another member takes over with the metadata intact.
func TestThreeMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three embedded etcd members")
	}
	logger := testLogger(t)
	cfgs := make([]Config, 3)
	var initial []string
	for i := range cfgs {
		cfgs[i] = testConfig(t, fmt.Sprintf("m%d", i+1))
		initial = append(initial, cfgs[i].Name+"="+cfgs[i].EtcdPeerURL)
	}
	servers := make([]*Server, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(initial, ",")
		s, err := New(cfgs[i], logger)
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = s
		t.Cleanup(s.Close)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs[i] = s.Start(ctx) // each waits for a quorum of the others
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i+1, err)
		}
	}
	leader := waitLeader(t, servers[0])
	var lead *Server
	var followers []*Server
	for _, s := range servers {
		if s.ClusterID() != servers[0].ClusterID() {
			t.Fatalf("members disagree on the cluster id: %d vs %d", s.ClusterID(), servers[0].ClusterID())
		}
		if s.Member().Name == leader.Name {
			lead = s
		} else {
			followers = append(followers, s)
		}
	}
	if lead == nil || len(followers) != 2 {
		t.Fatalf("leader %v not among the members", leader)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hdr := &schedulerpb.RequestHeader{ClusterId: lead.ClusterID()}

	// A follower names the leader, in GetMembers and in NOT_LEADER errors.
	fcli, _ := dial(t, followers[0].Addr())
	members := mustOK(t, res(fcli.GetMembers(ctx, &schedulerpb.GetMembersRequest{})))
	if len(members.Members) != 3 || members.Leader.GetAddress() != lead.Addr() {
		t.Fatalf("GetMembers from a follower = %v", members)
	}
	for _, m := range members.Members {
		if m.Address == "" {
			t.Errorf("member %s published no address", m.Name)
		}
	}
	resp, err := fcli.AllocID(ctx, &schedulerpb.AllocIDRequest{Header: hdr})
	if err != nil || resp.Header.GetError().GetType() != schedulerpb.ErrorType_NOT_LEADER ||
		resp.Header.Error.Leader.GetAddress() != lead.Addr() {
		t.Fatalf("AllocID on a follower = %v, %v", resp, err)
	}

	// Bootstrap through the leader.
	cli, _ := dial(t, lead.Addr())
	storeID := mustOK(t, res(cli.AllocID(ctx, &schedulerpb.AllocIDRequest{Header: hdr}))).Id
	mustOK(t, res(cli.Bootstrap(ctx, &schedulerpb.BootstrapRequest{Header: hdr,
		Store:  &metapb.Store{Id: storeID, Address: "127.0.0.1:20160"},
		Region: region(storeID+1, "", "", 1, 1, &metapb.Peer{Id: storeID + 2, StoreId: storeID})})))
	lastID := mustOK(t, res(cli.AllocID(ctx, &schedulerpb.AllocIDRequest{Header: hdr}))).Id

	// A follower's status API redirects to the leader's.
	var stores struct {
		Count int `json:"count"`
	}
	if code := httpGetJSON(t, "http://"+followers[1].StatusAddr()+"/api/v1/stores", &stores); code != http.StatusOK || stores.Count != 1 {
		t.Fatalf("stores through a follower: %d %+v", code, stores)
	}

	// The leader stops; a follower takes over.
	lead.Close()
	var next *schedulerpb.Member
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := followers[0].leader(ctx)
		if err == nil && m != nil && m.Name != lead.Member().Name {
			next = m
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader: %v %v", m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cli, _ = dial(t, next.Address)
	var b *schedulerpb.IsBootstrappedResponse
	for { // the new leader may still be loading the state
		b, err = cli.IsBootstrapped(ctx, &schedulerpb.IsBootstrappedRequest{Header: hdr})
		if err == nil && b.Header.Error == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("IsBootstrapped on the new leader: %v %v", b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !b.Bootstrapped {
		t.Fatal("the new leader does not know the cluster is bootstrapped")
	}
	if id := mustOK(t, res(cli.AllocID(ctx, &schedulerpb.AllocIDRequest{Header: hdr}))).Id; id <= lastID {
		t.Fatalf("the new leader handed out id %d, but %d was handed out before", id, lastID)
	}
	if r := mustOK(t, res(cli.GetRegion(ctx, &schedulerpb.GetRegionRequest{Header: hdr, RegionKey: []byte("k")}))); r.Region.Id != storeID+1 {
		t.Fatalf("region on the new leader: %v", r.Region)
	}
}
