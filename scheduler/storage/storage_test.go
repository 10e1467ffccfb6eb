package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"

	"github.com/regionkv/regionkv/internal/freeport"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// startEtcd starts a single-member etcd in a temp dir and returns a client.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	var urls []url.URL
	for _, a := range freeport.Addrs(t, 2) {
		u, _ := url.Parse("http://" + a)
		urls = append(urls, *u)
	}
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = urls[:1], urls[:1]
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = urls[1:], urls[1:]
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	c := v3client.New(e.Server)
	t.Cleanup(func() { c.Close() })
	return c
}

func region(id uint64, start, end string) *metapb.Region {
	return &metapb.Region{Id: id, StartKey: []byte(start), EndKey: []byte(end),
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1}, Peers: []*metapb.Peer{{Id: id + 1000, StoreId: 1}}}
}

// TestStorageContract runs the same checks against Memory and Etcd.
func TestStorageContract(t *testing.T) {
	etcdClient := startEtcd(t)
	for _, tc := range []struct {
		name string
		st   Storage
	}{
		{"memory", NewMemory()},
		{"etcd", NewEtcd(etcdClient, 42)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := tc.st
			if ok, err := st.Bootstrapped(ctx); err != nil || ok {
				t.Fatalf("Bootstrapped = %v, %v", ok, err)
			}
			if cfg, err := st.LoadConfig(ctx); err != nil || cfg != nil {
				t.Fatalf("LoadConfig = %v, %v", cfg, err)
			}
			store := &metapb.Store{Id: 1, Address: "a"}
			cfg := &schedulerpb.ClusterConfig{MaxReplicas: 3, MaxStoreDownTimeMs: 1}
			if err := st.Bootstrap(ctx, store, region(1, "", ""), cfg); err != nil {
				t.Fatal(err)
			}
			if err := st.Bootstrap(ctx, store, region(1, "", ""), cfg); !errors.Is(err, ErrAlreadyBootstrapped) {
				t.Fatalf("second Bootstrap: %v", err)
			}
			if ok, _ := st.Bootstrapped(ctx); !ok {
				t.Fatal("not bootstrapped")
			}
			// More regions than one etcd page, then a split that replaces one.
			var put []*metapb.Region
			for i := uint64(2); i < 2+loadPageSize+10; i++ {
				put = append(put, region(i, fmt.Sprintf("k%05d", i), fmt.Sprintf("k%05d", i+1)))
			}
			if err := st.SaveRegions(ctx, put, []uint64{1}); err != nil {
				t.Fatal(err)
			}
			var n int
			var last uint64
			if err := st.LoadRegions(ctx, func(r *metapb.Region) {
				if r.Id <= last || r.Id == 1 {
					t.Fatalf("region %d after %d", r.Id, last)
				}
				last = r.Id
				n++
			}); err != nil {
				t.Fatal(err)
			}
			if n != len(put) {
				t.Fatalf("loaded %d regions, want %d", n, len(put))
			}
			if err := st.SaveStore(ctx, &metapb.Store{Id: 2, Address: "b"}); err != nil {
				t.Fatal(err)
			}
			var stores []uint64
			if err := st.LoadStores(ctx, func(s *metapb.Store) { stores = append(stores, s.Id) }); err != nil || len(stores) != 2 {
				t.Fatalf("stores %v, %v", stores, err)
			}
			if got, err := st.LoadConfig(ctx); err != nil || got.MaxReplicas != 3 {
				t.Fatalf("config %v, %v", got, err)
			}
			if ok, err := st.CASAllocID(ctx, 0, 100); err != nil || !ok {
				t.Fatalf("CAS 0→100: %v %v", ok, err)
			}
			if ok, err := st.CASAllocID(ctx, 0, 200); err != nil || ok {
				t.Fatalf("CAS 0→200 after 0→100: %v %v", ok, err)
			}
			if v, err := st.LoadAllocID(ctx); err != nil || v != 100 {
				t.Fatalf("alloc id %d, %v", v, err)
			}
		})
	}
}

// TestEtcdGuard checks that a failed guard refuses every write.
func TestEtcdGuard(t *testing.T) {
	c := startEtcd(t)
	ctx := context.Background()
	if _, err := c.Put(ctx, "/leader", "me"); err != nil {
		t.Fatal(err)
	}
	guard := clientv3.Compare(clientv3.Value("/leader"), "=", "me")
	st := NewEtcd(c, 1, guard)
	if err := st.SaveStore(ctx, &metapb.Store{Id: 1, Address: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/leader", "someone else"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"SaveStore":   st.SaveStore(ctx, &metapb.Store{Id: 2, Address: "b"}),
		"SaveRegions": st.SaveRegions(ctx, []*metapb.Region{region(1, "", "")}, nil),
		"SaveConfig":  st.SaveConfig(ctx, &schedulerpb.ClusterConfig{}),
		"Bootstrap":   st.Bootstrap(ctx, &metapb.Store{Id: 1}, region(1, "", ""), &schedulerpb.ClusterConfig{}),
	} {
		if !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s with a failed guard: %v", name, err)
		}
	}
	if _, err := st.CASAllocID(ctx, 0, 10); !errors.Is(err, ErrNotLeader) {
		t.Errorf("CASAllocID with a failed guard: %v", err)
	}
	var stores int
	_ = st.LoadStores(ctx, func(*metapb.Store) { stores++ })
	if stores != 1 {
		t.Fatalf("%d stores saved, want 1", stores)
	}
}

func TestInitClusterID(t *testing.T) {
	c := startEtcd(t)
	ctx := context.Background()
	id1, err := InitClusterID(ctx, c)
	if err != nil || id1 == 0 {
		t.Fatalf("InitClusterID = %d, %v", id1, err)
	}
	id2, err := InitClusterID(ctx, c)
	if err != nil || id2 != id1 {
		t.Fatalf("second InitClusterID = %d, %v; want %d", id2, err, id1)
	}
}
