package raftstore

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/metapb"
)

// Sentinel errors.
var (
	// ErrStoreStopped: the store is shutting down; nothing more will be served.
	ErrStoreStopped = errors.New("raftstore: store stopped")
	// ErrStaleCommand: the command was proposed but its log slot went to
	// another entry; it was not applied and may be retried.
	ErrStaleCommand = errors.New("raftstore: stale command")
)

// Region errors are typed so that callers can match them with errors.As; they
// become errorpb.Error in exactly one place, ErrToPB.

// NotLeaderError: this peer is not the leader. Leader is nil when unknown.
type NotLeaderError struct {
	RegionID uint64
	Leader   *metapb.Peer
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("region %d: not leader (leader %v)", e.RegionID, e.Leader)
}

// RegionNotFoundError: this store has no live peer of the region.
type RegionNotFoundError struct{ RegionID uint64 }

func (e *RegionNotFoundError) Error() string { return fmt.Sprintf("region %d not found", e.RegionID) }

// KeyNotInRegionError: a key lies outside the region.
type KeyNotInRegionError struct {
	Key    []byte
	Region *metapb.Region
}

func (e *KeyNotInRegionError) Error() string {
	return fmt.Sprintf("key %q not in region %d [%q, %q)", e.Key, e.Region.GetId(), e.Region.GetStartKey(), e.Region.GetEndKey())
}

// EpochNotMatchError: the request's epoch is stale; Regions are the current
// regions that cover it.
type EpochNotMatchError struct {
	Msg     string
	Regions []*metapb.Region
}

func (e *EpochNotMatchError) Error() string { return "epoch not match: " + e.Msg }

// StoreNotMatchError: the request names a peer on another store.
type StoreNotMatchError struct{ RequestStoreID, ActualStoreID uint64 }

func (e *StoreNotMatchError) Error() string {
	return fmt.Sprintf("store not match: request for store %d, this is store %d", e.RequestStoreID, e.ActualStoreID)
}

// EntryTooLargeError: a command is larger than the raft entry limit.
type EntryTooLargeError struct {
	RegionID uint64
	Size     uint64
}

func (e *EntryTooLargeError) Error() string {
	return fmt.Sprintf("region %d: raft entry of %d bytes is too large", e.RegionID, e.Size)
}

// ServerIsBusyError: the store sheds load.
type ServerIsBusyError struct{ Reason string }

func (e *ServerIsBusyError) Error() string { return "server is busy: " + e.Reason }

// ErrToPB turns an error into the region error sent to clients. Errors that
// are not region errors keep only their message.
func ErrToPB(err error) *errorpb.Error {
	if err == nil {
		return nil
	}
	pb := &errorpb.Error{Message: err.Error()}
	var (
		notLeader *NotLeaderError
		notFound  *RegionNotFoundError
		keyNotIn  *KeyNotInRegionError
		epoch     *EpochNotMatchError
		storeNot  *StoreNotMatchError
		tooLarge  *EntryTooLargeError
		busy      *ServerIsBusyError
	)
	switch {
	case errors.As(err, &notLeader):
		pb.NotLeader = &errorpb.NotLeader{RegionId: notLeader.RegionID, Leader: notLeader.Leader}
	case errors.As(err, &notFound):
		pb.RegionNotFound = &errorpb.RegionNotFound{RegionId: notFound.RegionID}
	case errors.As(err, &keyNotIn):
		pb.KeyNotInRegion = &errorpb.KeyNotInRegion{
			Key: keyNotIn.Key, RegionId: keyNotIn.Region.GetId(),
			StartKey: keyNotIn.Region.GetStartKey(), EndKey: keyNotIn.Region.GetEndKey(),
		}
	case errors.As(err, &epoch):
		pb.EpochNotMatch = &errorpb.EpochNotMatch{CurrentRegions: epoch.Regions}
	case errors.As(err, &storeNot):
		pb.StoreNotMatch = &errorpb.StoreNotMatch{RequestStoreId: storeNot.RequestStoreID, ActualStoreId: storeNot.ActualStoreID}
	case errors.As(err, &tooLarge):
		pb.RaftEntryTooLarge = &errorpb.RaftEntryTooLarge{RegionId: tooLarge.RegionID, EntrySize: tooLarge.Size}
	case errors.As(err, &busy):
		pb.ServerIsBusy = &errorpb.ServerIsBusy{Reason: busy.Reason}
	case errors.Is(err, ErrStaleCommand):
		pb.StaleCommand = &errorpb.StaleCommand{}
	}
	return pb
}

// CheckKeyInRegion returns a KeyNotInRegionError if key is outside region.
func CheckKeyInRegion(key []byte, region *metapb.Region) error {
	if bytes.Compare(key, region.StartKey) >= 0 && (len(region.EndKey) == 0 || bytes.Compare(key, region.EndKey) < 0) {
		return nil
	}
	return &KeyNotInRegionError{Key: key, Region: region}
}
