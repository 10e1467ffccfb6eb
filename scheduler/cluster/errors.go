package cluster

import (
	"errors"
	"fmt"

	"github.com/regionkv/regionkv/proto/metapb"
)

// Errors returned by Cluster. The gRPC layer maps each to a
// schedulerpb.ErrorType in one place (scheduler/server).
var (
	// ErrNotBootstrapped: the request needs a bootstrapped cluster.
	ErrNotBootstrapped = errors.New("cluster is not bootstrapped")
	// ErrAlreadyBootstrapped: Bootstrap was called on a bootstrapped cluster.
	ErrAlreadyBootstrapped = errors.New("cluster is already bootstrapped")
	// ErrStoreNotFound: no store has the id.
	ErrStoreNotFound = errors.New("store not found")
	// ErrStoreTombstone: the store was removed from the cluster for good.
	ErrStoreTombstone = errors.New("store is tombstone")
	// ErrRegionNotFound: no region has the id or contains the key.
	ErrRegionNotFound = errors.New("region not found")
	// ErrInvalidArgument wraps a malformed request.
	ErrInvalidArgument = errors.New("invalid argument")
)

// StaleRegionError rejects a region update whose epoch is older than that of
// a region the scheduler knows (the same region, or one overlapping it).
type StaleRegionError struct {
	Region *metapb.Region // the rejected update
	Newer  *metapb.Region // the known region it is stale against
	// Term is set when the update had the known epoch but an older raft term
	// (a deposed leader reporting).
	Term, KnownTerm uint64
}

func (e *StaleRegionError) Error() string {
	if e.Term != 0 {
		return fmt.Sprintf("stale region %d: term %d older than known term %d", e.Region.GetId(), e.Term, e.KnownTerm)
	}
	return fmt.Sprintf("stale region %d epoch %s: region %d has epoch %s",
		e.Region.GetId(), epochString(e.Region.GetRegionEpoch()), e.Newer.GetId(), epochString(e.Newer.GetRegionEpoch()))
}

func epochString(e *metapb.RegionEpoch) string {
	return fmt.Sprintf("{conf_ver %d, version %d}", e.GetConfVer(), e.GetVersion())
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}
