// Package client is the Go client of regionkv's raw key-value API.
//
// A Client finds regions through the scheduler, caches them by start key
// together with their leaders, and sends every request straight to the
// leader's store with the region context (region id, epoch, peer), keeping
// one small pool of gRPC connections per store:
//
//	c, err := client.New(ctx, []string{"127.0.0.1:2379"}, client.Options{})
//	if err != nil { ... }
//	defer c.Close()
//	err = c.Put(ctx, []byte("hello"), []byte("world"))
//	v, err := c.Get(ctx, []byte("hello"))              // ErrNotFound if absent
//	kvs, err := c.Scan(ctx, []byte("a"), []byte("z"), 100)
//
// # Retries
//
// A call retries, with jittered exponential backoff, until it succeeds, fails
// for good, or its context ends (a context without a deadline gets
// Options.Timeout). It retries:
//
//   - every region error, after fixing its cache: NotLeader (move to the
//     leader it names, or try the next voter while an election runs),
//     EpochNotMatch (the regions the store reports replace the stale one),
//     RegionNotFound and KeyNotInRegion (the region is looked up again),
//     StaleCommand, ServerIsBusy (waiting at least the store's backoff) and
//     StoreNotMatch (the store's address is looked up again). RaftEntryTooLarge
//     is not retried. A region error means the request was not applied;
//   - gRPC Unavailable (the store is down or unreachable: the next voter is
//     tried and the store's address is looked up again). For a write, only
//     when the request cannot have run: it never reached a connection, the
//     store said it did not run it, or (on a batch stream) the store's
//     closing message says so. A connection that broke after a write went
//     out makes its outcome unknown (below);
//   - for reads only, gRPC Unknown and an attempt that outlived
//     Options.AttemptTimeout.
//
// Malformed requests (gRPC InvalidArgument) and failures a store reports in
// a response's error string (*StoreError) are returned at once.
//
// # Writes whose outcome is unknown
//
// A store answers gRPC Unknown when a write was proposed but it cannot tell
// whether it was applied (raftstore.ErrProposalUnknown: the proposing leader
// was deposed before it saw its entry). An attempt that times out, and one
// whose connection or batch stream broke after the write was sent, are just
// as ambiguous. By default the client does not retry such a write: it returns an
// error that matches ErrUnknownOutcome (errors.Is), so that the caller
// decides. A write whose context ends after an ambiguous attempt matches both
// ErrUnknownOutcome and the context's error.
//
// Every raw write (Put, Delete, their batch forms, DeleteRange) is
// idempotent: applying it twice leaves the same data as applying it once. So
// Options.RetryUnknownOutcome may turn those retries on, as regionkv-ctl and
// regionkv-bench do. The price is the usual one of retried writes: an attempt
// that was in fact applied may take effect before the retry, and a
// concurrent writer's value written in between may be overwritten by the
// retry.
//
// # Multi-region calls
//
// Batch calls are split by region (and by the server's request limits) and
// the parts run in parallel; each part is atomic within its region but the
// call as a whole is not. Scans continue region after region until the limit
// or the end of the range; each page is a linearizable read of one region,
// but a scan over several regions is not a snapshot of the whole range.
// DeleteRange deletes region by region, also not atomically.
package client
