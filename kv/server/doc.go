// Package server implements a store's gRPC services: the raw key-value API
// (regionkv.kvpb.Kv RawGet, RawPut, RawScan, ...) for clients, and the Raft
// and Snapshot streams that other stores use to deliver raft messages.
//
// The server is a thin layer over the raftstore. It validates requests
// (malformed ones get gRPC InvalidArgument, never a region error), turns each
// into one raft_cmdpb.RaftCmdRequest, hands it to the Store, and maps the
// outcome back:
//
//   - region errors (NotLeader, EpochNotMatch, KeyNotInRegion, ...) travel in
//     the response's region_error, so that clients can refresh their region
//     cache and retry;
//   - other failures of an otherwise well-formed request go in the
//     response's error string;
//   - an expired or cancelled request context becomes the matching gRPC
//     status (DeadlineExceeded, Canceled), and a stopped store Unavailable;
//   - a proposal whose fate the raftstore cannot know
//     (raftstore.ErrProposalUnknown) becomes Unknown: the write may or may
//     not have been applied. The server returns Unknown for nothing else.
//
// Addressing follows TiKV. A request whose Context names a region (region_id
// != 0) is served only by that peer, with that epoch. A request with
// region_id 0 is routed by key to the region this store holds for that key;
// such requests are what grpcurl users send. With a Forwarder (Options), a
// store that is not the region's leader, or holds no region for the key,
// forwards such a request once to the leader's store, with the region
// context filled in, and returns its answer (see forward.go); without one
// the client gets NotLeader or RegionNotFound.
//
// Importing the package replaces gRPC's "proto" codec with
// internal/grpccodec's, which marshals gogo-generated messages through their
// own generated methods.
package server
