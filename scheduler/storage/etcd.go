package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// Key layout in etcd. Everything lives under RootPath; a cluster's metadata
// under RootPath/<cluster id>/:
//
//	/regionkv/cluster_id                     decimal cluster id
//	/regionkv/<cid>/bootstrapped             Unix time of the bootstrap
//	/regionkv/<cid>/config                   schedulerpb.ClusterConfig
//	/regionkv/<cid>/alloc_id                 decimal id high water mark
//	/regionkv/<cid>/stores/<%020d id>        metapb.Store
//	/regionkv/<cid>/regions/<%020d id>       metapb.Region
//	/regionkv/<cid>/leader/...               leader election (ClusterPath + "/leader")
const RootPath = "/regionkv"

const clusterIDKey = RootPath + "/cluster_id"

const (
	// loadPageSize bounds one range read while loading stores and regions.
	loadPageSize = 1024
	// maxTxnOps is the most operations one transaction carries; etcd's
	// default limit (--max-txn-ops) is 128.
	maxTxnOps = 100
)

// InitClusterID returns the cluster id kept in etcd, generating and saving a
// new one if there is none. Members racing to do it agree on one id.
func InitClusterID(ctx context.Context, c *clientv3.Client) (uint64, error) {
	id := uint64(time.Now().Unix())<<32 | uint64(rand.Uint32())
	resp, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(clusterIDKey), "=", 0)).
		Then(clientv3.OpPut(clusterIDKey, strconv.FormatUint(id, 10))).
		Else(clientv3.OpGet(clusterIDKey)).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("storage: init cluster id: %w", err)
	}
	if resp.Succeeded {
		return id, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 {
		return 0, fmt.Errorf("%w: cluster id key vanished", ErrCorrupt)
	}
	id, err = strconv.ParseUint(string(kvs[0].Value), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: cluster id %q", ErrCorrupt, kvs[0].Value)
	}
	return id, nil
}

// ClusterPath is the etcd prefix of a cluster's metadata.
func ClusterPath(clusterID uint64) string {
	return fmt.Sprintf("%s/%d", RootPath, clusterID)
}

// Etcd is a Storage backed by etcd.
type Etcd struct {
	c     *clientv3.Client
	root  string
	guard []clientv3.Cmp
}

var _ Storage = (*Etcd)(nil)

// NewEtcd returns the Storage of cluster clusterID in c. Every write is made
// conditional on guard (typically "my election key still has my revision"):
// when a guard comparison fails, the write returns ErrNotLeader.
func NewEtcd(c *clientv3.Client, clusterID uint64, guard ...clientv3.Cmp) *Etcd {
	return &Etcd{c: c, root: ClusterPath(clusterID), guard: guard}
}

func (s *Etcd) bootstrapKey() string       { return s.root + "/bootstrapped" }
func (s *Etcd) configKey() string          { return s.root + "/config" }
func (s *Etcd) allocKey() string           { return s.root + "/alloc_id" }
func (s *Etcd) storePrefix() string        { return s.root + "/stores/" }
func (s *Etcd) regionPrefix() string       { return s.root + "/regions/" }
func (s *Etcd) storeKey(id uint64) string  { return fmt.Sprintf("%s%020d", s.storePrefix(), id) }
func (s *Etcd) regionKey(id uint64) string { return fmt.Sprintf("%s%020d", s.regionPrefix(), id) }

// commit runs ops in one transaction if the guard holds, and returns
// ErrNotLeader without writing anything if it does not.
func (s *Etcd) commit(ctx context.Context, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	resp, err := s.c.Txn(ctx).If(s.guard...).Then(ops...).Commit()
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, ErrNotLeader
	}
	return resp, nil
}

// Bootstrapped implements Storage.
func (s *Etcd) Bootstrapped(ctx context.Context) (bool, error) {
	resp, err := s.c.Get(ctx, s.bootstrapKey(), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("storage: read bootstrap marker: %w", err)
	}
	return resp.Count > 0, nil
}

// Bootstrap implements Storage.
func (s *Etcd) Bootstrap(ctx context.Context, store *metapb.Store, region *metapb.Region, cfg *schedulerpb.ClusterConfig) error {
	storeVal, err := store.Marshal()
	if err != nil {
		return err
	}
	regionVal, err := region.Marshal()
	if err != nil {
		return err
	}
	cfgVal, err := cfg.Marshal()
	if err != nil {
		return err
	}
	inner := clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.bootstrapKey()), "=", 0)},
		[]clientv3.Op{
			clientv3.OpPut(s.bootstrapKey(), strconv.FormatInt(time.Now().Unix(), 10)),
			clientv3.OpPut(s.storeKey(store.Id), string(storeVal)),
			clientv3.OpPut(s.regionKey(region.Id), string(regionVal)),
			clientv3.OpPut(s.configKey(), string(cfgVal)),
		}, nil)
	resp, err := s.commit(ctx, inner)
	if err != nil {
		return fmt.Errorf("storage: bootstrap: %w", err)
	}
	if !resp.Responses[0].GetResponseTxn().Succeeded {
		return ErrAlreadyBootstrapped
	}
	return nil
}

// LoadConfig implements Storage.
func (s *Etcd) LoadConfig(ctx context.Context) (*schedulerpb.ClusterConfig, error) {
	resp, err := s.c.Get(ctx, s.configKey())
	if err != nil {
		return nil, fmt.Errorf("storage: load config: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	cfg := new(schedulerpb.ClusterConfig)
	if err := cfg.Unmarshal(resp.Kvs[0].Value); err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrCorrupt, err)
	}
	return cfg, nil
}

// SaveConfig implements Storage.
func (s *Etcd) SaveConfig(ctx context.Context, cfg *schedulerpb.ClusterConfig) error {
	val, err := cfg.Marshal()
	if err != nil {
		return err
	}
	if _, err := s.commit(ctx, clientv3.OpPut(s.configKey(), string(val))); err != nil {
		return fmt.Errorf("storage: save config: %w", err)
	}
	return nil
}

// SaveStore implements Storage.
func (s *Etcd) SaveStore(ctx context.Context, store *metapb.Store) error {
	val, err := store.Marshal()
	if err != nil {
		return err
	}
	if _, err := s.commit(ctx, clientv3.OpPut(s.storeKey(store.Id), string(val))); err != nil {
		return fmt.Errorf("storage: save store %d: %w", store.Id, err)
	}
	return nil
}

// LoadStores implements Storage.
func (s *Etcd) LoadStores(ctx context.Context, fn func(*metapb.Store)) error {
	return s.loadRange(ctx, s.storePrefix(), func(k, v []byte) error {
		st := new(metapb.Store)
		if err := st.Unmarshal(v); err != nil {
			return fmt.Errorf("%w: store %s: %v", ErrCorrupt, k, err)
		}
		fn(st)
		return nil
	})
}

// SaveRegions implements Storage.
//
// etcd bounds the operations of one transaction (128 by default), so an
// update that covers more regions than maxTxnOps is written in several
// transactions: the new regions first, then the deletions. A crash in
// between leaves overlapping regions behind, which cluster.Load resolves in
// favour of the newer epoch, as the interrupted update would have.
func (s *Etcd) SaveRegions(ctx context.Context, put []*metapb.Region, del []uint64) error {
	ops := make([]clientv3.Op, 0, len(put)+len(del))
	for _, r := range put {
		val, err := r.Marshal()
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(s.regionKey(r.Id), string(val)))
	}
	for _, id := range del {
		ops = append(ops, clientv3.OpDelete(s.regionKey(id)))
	}
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		if _, err := s.commit(ctx, ops[:n]...); err != nil {
			return fmt.Errorf("storage: save regions: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// LoadRegions implements Storage.
func (s *Etcd) LoadRegions(ctx context.Context, fn func(*metapb.Region)) error {
	return s.loadRange(ctx, s.regionPrefix(), func(k, v []byte) error {
		r := new(metapb.Region)
		if err := r.Unmarshal(v); err != nil {
			return fmt.Errorf("%w: region %s: %v", ErrCorrupt, k, err)
		}
		fn(r)
		return nil
	})
}

// loadRange calls fn for every key under prefix, in key order, reading at
// most loadPageSize keys at a time, all at the revision of the first read.
func (s *Etcd) loadRange(ctx context.Context, prefix string, fn func(k, v []byte) error) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.c.Get(ctx, key, opts...)
		if err != nil {
			return fmt.Errorf("storage: load %s: %w", prefix, err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if err := fn(kv.Key, kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// LoadAllocID implements Storage.
func (s *Etcd) LoadAllocID(ctx context.Context) (uint64, error) {
	resp, err := s.c.Get(ctx, s.allocKey())
	if err != nil {
		return 0, fmt.Errorf("storage: load alloc id: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	v, err := strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: alloc id %q", ErrCorrupt, resp.Kvs[0].Value)
	}
	return v, nil
}

// CASAllocID implements Storage.
func (s *Etcd) CASAllocID(ctx context.Context, old, new uint64) (bool, error) {
	key := s.allocKey()
	cmp := clientv3.Compare(clientv3.Value(key), "=", strconv.FormatUint(old, 10))
	if old == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	inner := clientv3.OpTxn([]clientv3.Cmp{cmp}, []clientv3.Op{clientv3.OpPut(key, strconv.FormatUint(new, 10))}, nil)
	resp, err := s.commit(ctx, inner)
	if err != nil {
		return false, fmt.Errorf("storage: save alloc id: %w", err)
	}
	return resp.Responses[0].GetResponseTxn().Succeeded, nil
}
