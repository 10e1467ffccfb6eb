package raftstore

import (
	"bytes"
	"context"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
)

// splitCheckTask asks the split checker to measure a region.
type splitCheckTask struct {
	region *metapb.Region
	// force: split at the middle even below the size limit (a scheduler
	// operator asked for it).
	force bool
}

// runSplitChecker measures regions off the raft workers: it walks the
// region's keys in every column family (keys only), summing Badger's size
// estimates, and picks the key where the running size passes the split
// size (or half the region, when forced).
func (s *Store) runSplitChecker() {
	for {
		select {
		case <-s.stopc:
			return
		case t := <-s.splitq:
			key, size, keys := s.measureRegion(t.region, t.force)
			_ = s.router.Send(t.region.Id, peerMsg{
				kind: peerMsgSplitCheckResult, split: t.region, splitKey: key, approxSize: size, approxKeys: keys,
			})
		}
	}
}

// measureRegion returns the region's approximate size and key count and, if
// the region should split, the split key.
func (s *Store) measureRegion(region *metapb.Region, force bool) (splitKey []byte, size, keys uint64) {
	txn := s.engines.KV.NewTransaction(false)
	defer txn.Discard()
	// Sizes per user key across column families, in key order of the
	// default column family, which is where raw data lives.
	type mark struct {
		key  []byte
		size uint64
	}
	var marks []mark
	// Remember a candidate split key every so many bytes.
	step := max(1, min(64<<10, s.cfg.RegionSplitSize/8))
	for _, cf := range engine.CFs {
		cfb, _ := engine.CFByte(cf)
		lo, hi := engine.DataRange(cfb, region.StartKey, region.EndKey)
		it := engine.NewRangeIter(txn, lo, hi, false, true)
		for ; it.Valid(); it.Next() {
			item := it.Item()
			sz := uint64(item.EstimatedSize())
			size += sz
			keys++
			if cf == engine.CFDefault && (len(marks) == 0 || size-marks[len(marks)-1].size >= step) {
				marks = append(marks, mark{key: bytes.Clone(engine.UserKey(item.Key())), size: size})
			}
		}
		it.Close()
	}
	cfg := s.cfg
	target := cfg.RegionSplitSize
	switch {
	case force:
		target = size / 2
	case size < cfg.RegionMaxSize && keys < cfg.RegionMaxKeys:
		return nil, size, keys
	}
	for _, m := range marks {
		if m.size >= target && !bytes.Equal(m.key, region.StartKey) {
			return m.key, size, keys
		}
	}
	return nil, size, keys
}

// onSplitCheckResult records the region's size and, on a leader whose
// region has not changed since it was measured, asks for a split.
func (p *peer) onSplitCheckResult(measured *metapb.Region, key []byte, size, keys uint64) {
	region := p.region()
	if measured.RegionEpoch.Version != region.RegionEpoch.Version {
		return
	}
	p.approxSize, p.approxKeys = size, keys
	if key == nil || !p.isLeader || CheckKeyInRegion(key, region) != nil || bytes.Equal(key, region.StartKey) {
		return
	}
	s := p.store
	regionID := region.Id
	p.log.Info("region is large: splitting", "approx_size", size, "approx_keys", keys, "key", key)
	s.schedule(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, schedulerCallTimeout)
		defer cancel()
		if _, err := s.SplitRegion(ctx, regionID, key); err != nil {
			s.log.Info("split", "region_id", regionID, "err", err)
		}
	})
}

// onSplitCheckTick queues a split check of a leader's region.
func (p *peer) onSplitCheckTick(force bool) {
	if !p.isLeader && !force {
		return
	}
	select {
	case p.store.splitq <- splitCheckTask{region: p.region(), force: force}:
	default:
	}
}
