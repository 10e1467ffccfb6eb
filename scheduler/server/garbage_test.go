package server

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// TestEmptyRequests sends every RPC of the Scheduler service empty
// requests, with and without the cluster's header, before and after the
// cluster is bootstrapped. None may crash the server (gRPC does not recover
// a handler's panic) or change the cluster; the ones that cannot be served
// say why in the response header.
func TestEmptyRequests(t *testing.T) {
	s := startServer(t, testConfig(t, "s1"), testLogger(t))
	waitLeader(t, s)
	cli, _ := dial(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clusterID := mustOK(t, res(cli.GetMembers(ctx, &schedulerpb.GetMembersRequest{}))).Header.ClusterId
	hdr := &schedulerpb.RequestHeader{ClusterId: clusterID}

	// Queries that may answer an empty request without an error (GetRegion
	// of the empty key finds the first region).
	harmless := map[string]bool{"GetMembers": true, "IsBootstrapped": true, "AllocID": true,
		"GetAllStores": true, "GetRegion": true, "ScanRegions": true, "GetClusterConfig": true}
	sendAll := func(phase string) {
		v := reflect.ValueOf(cli)
		for i := 0; i < v.NumMethod(); i++ {
			m := v.Type().Method(i)
			if m.Type.NumIn() != 4 { // (receiver,) ctx, request, ...opts: unary only
				continue
			}
			for _, withHeader := range []bool{false, true} {
				req := reflect.New(m.Type.In(2).Elem())
				if withHeader {
					req.Elem().FieldByName("Header").Set(reflect.ValueOf(hdr))
				}
				out := v.Method(i).Call([]reflect.Value{reflect.ValueOf(ctx), req})
				if err, _ := out[1].Interface().(error); err != nil {
					t.Errorf("%s: %s (header %v): gRPC error %v, not an error in the header", phase, m.Name, withHeader, err)
					continue
				}
				resp := out[0].Interface().(headered)
				if resp.GetHeader().GetError() == nil && !harmless[m.Name] {
					t.Errorf("%s: %s (header %v): an empty request was served: %v", phase, m.Name, withHeader, resp)
				}
			}
		}
		// The region heartbeat stream too.
		stream, err := cli.RegionHeartbeat(ctx)
		if err != nil {
			t.Fatalf("%s: region heartbeat stream: %v", phase, err)
		}
		for _, req := range []*schedulerpb.RegionHeartbeatRequest{{}, {Header: hdr}, {Header: hdr, Region: &metapb.Region{}},
			{Header: hdr, Region: &metapb.Region{Id: 1}, Leader: &metapb.Peer{}}} {
			if err := stream.Send(req); err != nil {
				break // the server may end the stream on a bad request
			}
		}
		_ = stream.CloseSend()
		for {
			if _, err := stream.Recv(); err != nil {
				break
			}
		}
	}

	sendAll("not bootstrapped")
	if b := mustOK(t, res(cli.IsBootstrapped(ctx, &schedulerpb.IsBootstrappedRequest{Header: hdr}))); b.Bootstrapped {
		t.Fatal("empty requests bootstrapped the cluster")
	}
	storeID, peerID, regionID := allocID(ctx, t, cli, hdr), allocID(ctx, t, cli, hdr), allocID(ctx, t, cli, hdr)
	mustOK(t, res(cli.Bootstrap(ctx, &schedulerpb.BootstrapRequest{Header: hdr,
		Store:  &metapb.Store{Id: storeID, Address: "127.0.0.1:20160"},
		Region: region(regionID, "", "", 1, 1, &metapb.Peer{Id: peerID, StoreId: storeID})})))
	before := mustOK(t, res(cli.GetClusterConfig(ctx, &schedulerpb.GetClusterConfigRequest{Header: hdr}))).Config

	sendAll("bootstrapped")
	after := mustOK(t, res(cli.GetClusterConfig(ctx, &schedulerpb.GetClusterConfigRequest{Header: hdr}))).Config
	if after.String() != before.String() {
		t.Errorf("the cluster config changed: %v, was %v", after, before)
	}
	stores := mustOK(t, res(cli.GetAllStores(ctx, &schedulerpb.GetAllStoresRequest{Header: hdr}))).Stores
	if len(stores) != 1 || stores[0].Id != storeID {
		t.Errorf("stores after the empty requests: %v", stores)
	}
	r := mustOK(t, res(cli.GetRegion(ctx, &schedulerpb.GetRegionRequest{Header: hdr, RegionKey: []byte("k")})))
	if r.Region.GetId() != regionID {
		t.Errorf("region after the empty requests: %v", r.Region)
	}
}
