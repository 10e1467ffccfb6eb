package cluster

import (
	"bytes"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// RegionInfo is a region as the scheduler knows it: its metadata and what
// its leader last reported. A RegionInfo is immutable once published; an
// update builds a new one, so readers may keep and share it without locks.
type RegionInfo struct {
	meta            *metapb.Region
	leader          *metapb.Peer // nil when no heartbeat has named one
	pendingPeers    []*metapb.Peer
	downPeers       []*schedulerpb.PeerStats
	approximateSize uint64
	approximateKeys uint64
	term            uint64
}

// NewRegionInfo returns a RegionInfo for meta led by leader (which may be
// nil). It takes ownership of meta and leader.
func NewRegionInfo(meta *metapb.Region, leader *metapb.Peer) *RegionInfo {
	return &RegionInfo{meta: meta, leader: leader}
}

// RegionFromHeartbeat builds the RegionInfo a heartbeat describes. It takes
// ownership of the request's messages.
func RegionFromHeartbeat(req *schedulerpb.RegionHeartbeatRequest) *RegionInfo {
	return &RegionInfo{
		meta:            req.Region,
		leader:          req.Leader,
		pendingPeers:    req.PendingPeers,
		downPeers:       req.DownPeers,
		approximateSize: req.ApproximateSize,
		approximateKeys: req.ApproximateKeys,
		term:            req.Term,
	}
}

// Meta returns the region's metadata. Callers must not modify it.
func (r *RegionInfo) Meta() *metapb.Region { return r.meta }

// ID returns the region id.
func (r *RegionInfo) ID() uint64 { return r.meta.GetId() }

// StartKey returns the first key of the region.
func (r *RegionInfo) StartKey() []byte { return r.meta.GetStartKey() }

// EndKey returns the key just past the region; empty means +infinity.
func (r *RegionInfo) EndKey() []byte { return r.meta.GetEndKey() }

// Epoch returns the region epoch.
func (r *RegionInfo) Epoch() *metapb.RegionEpoch { return r.meta.GetRegionEpoch() }

// Peers returns the region's peers.
func (r *RegionInfo) Peers() []*metapb.Peer { return r.meta.GetPeers() }

// Leader returns the last reported leader, or nil.
func (r *RegionInfo) Leader() *metapb.Peer { return r.leader }

// PendingPeers returns the peers the leader reported as far behind.
func (r *RegionInfo) PendingPeers() []*metapb.Peer { return r.pendingPeers }

// DownPeers returns the peers the leader reported as unresponsive.
func (r *RegionInfo) DownPeers() []*schedulerpb.PeerStats { return r.downPeers }

// ApproximateSize returns the reported region size in bytes.
func (r *RegionInfo) ApproximateSize() uint64 { return r.approximateSize }

// ApproximateKeys returns the reported number of keys.
func (r *RegionInfo) ApproximateKeys() uint64 { return r.approximateKeys }

// Term returns the raft term of the last heartbeat (0 if unknown).
func (r *RegionInfo) Term() uint64 { return r.term }

// StorePeer returns the region's peer on store storeID, or nil.
func (r *RegionInfo) StorePeer(storeID uint64) *metapb.Peer {
	for _, p := range r.meta.GetPeers() {
		if p.StoreId == storeID {
			return p
		}
	}
	return nil
}

// Peer returns the region's peer with id peerID, or nil.
func (r *RegionInfo) Peer(peerID uint64) *metapb.Peer {
	for _, p := range r.meta.GetPeers() {
		if p.Id == peerID {
			return p
		}
	}
	return nil
}

// Contains reports whether key lies in [StartKey, EndKey).
func (r *RegionInfo) Contains(key []byte) bool {
	return bytes.Compare(key, r.StartKey()) >= 0 && (len(r.EndKey()) == 0 || bytes.Compare(key, r.EndKey()) < 0)
}

// ToProto returns the region in its wire form (sharing r's messages).
func (r *RegionInfo) ToProto() *schedulerpb.RegionInfo {
	return &schedulerpb.RegionInfo{
		Region:       r.meta,
		Leader:       r.leader,
		DownPeers:    r.downPeers,
		PendingPeers: r.pendingPeers,
	}
}

// withLeaderFrom returns a copy of r that keeps old's leader if that peer
// is still a member of r. It is used for updates that carry no leader (split
// reports), so the region stays routable until its own heartbeat arrives.
func (r *RegionInfo) withLeaderFrom(old *RegionInfo) *RegionInfo {
	if r.leader != nil || old == nil || old.leader == nil || r.Peer(old.leader.Id) == nil {
		return r
	}
	cp := *r
	cp.leader = old.leader
	cp.approximateSize, cp.approximateKeys, cp.term = old.approximateSize, old.approximateKeys, old.term
	return &cp
}

// staleAgainst reports whether epoch a is older than b in version or conf_ver.
func staleAgainst(a, b *metapb.RegionEpoch) bool {
	return a.GetVersion() < b.GetVersion() || a.GetConfVer() < b.GetConfVer()
}

// sameMeta reports whether two regions have the same persisted shape.
func sameMeta(a, b *metapb.Region) bool {
	if a.GetRegionEpoch().GetVersion() != b.GetRegionEpoch().GetVersion() ||
		a.GetRegionEpoch().GetConfVer() != b.GetRegionEpoch().GetConfVer() ||
		!bytes.Equal(a.GetStartKey(), b.GetStartKey()) || !bytes.Equal(a.GetEndKey(), b.GetEndKey()) ||
		len(a.GetPeers()) != len(b.GetPeers()) {
		return false
	}
	for i, p := range a.GetPeers() {
		q := b.GetPeers()[i]
		if p.Id != q.Id || p.StoreId != q.StoreId || p.Role != q.Role {
			return false
		}
	}
	return true
}
