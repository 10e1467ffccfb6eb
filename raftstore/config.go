package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"time"
)

// Config tunes a store's raft machinery. The zero value of every field means
// its default (see DefaultConfig); Validate reports impossible combinations.
type Config struct {
	// RaftBaseTickInterval is one logical raft tick.
	RaftBaseTickInterval time.Duration
	// RaftHeartbeatTicks and RaftElectionTicks are in base ticks; the
	// election timeout is randomized in [ElectionTicks, 2*ElectionTicks).
	RaftHeartbeatTicks int
	RaftElectionTicks  int
	// RaftMaxSizePerMsg caps the entries of one MsgApp.
	RaftMaxSizePerMsg uint64
	// RaftMaxInflightMsgs caps unacknowledged MsgApps per follower.
	RaftMaxInflightMsgs int
	// RaftMaxCommittedSizePerReady caps the committed entries applied per
	// Ready, which bounds one round's kv write.
	RaftMaxCommittedSizePerReady uint64
	// RaftMaxUncommittedSize makes a leader refuse proposals (NotLeader is
	// not right for that; the client sees ServerIsBusy) once this many bytes
	// are uncommitted.
	RaftMaxUncommittedSize uint64
	// RaftEntryMaxSize is the largest command a client may propose. It must
	// hold the largest raw batch kv/server accepts (17 MiB).
	RaftEntryMaxSize uint64
	// DisableLeaseRead makes every read take a ReadIndex round instead of
	// being answered from a leader lease (lease.go).
	DisableLeaseRead bool
	// RaftWorkers is the size of the raft worker pool. Every worker commits
	// its own raft-DB batch with its own fsync, so fewer workers mean larger
	// rounds and fewer fsyncs; the default is one per four CPUs (at least
	// one, at most eight). Each worker overlaps its fsync with applying.
	RaftWorkers int
	// RaftMaxPeersPerRound caps how many peers one worker round handles, and
	// so how many peers share one fsync.
	RaftMaxPeersPerRound int
	// RaftLogGCTickTicks is how often (in base ticks) a leader considers
	// compacting its log.
	RaftLogGCTickTicks int
	// RaftLogGCThreshold: a compaction must free at least this many entries.
	RaftLogGCThreshold uint64
	// RaftLogGCCountLimit and RaftLogGCSizeLimit: past either, a leader
	// compacts up to its applied index even if a follower still needs the
	// entries (that follower will get a snapshot). Below them it compacts
	// only what every follower has.
	RaftLogGCCountLimit uint64
	RaftLogGCSizeLimit  uint64
	// KVSyncTickTicks is how often (in base ticks) the kv DB is synced while
	// applied raw writes wait for their RaftApplyState to be written
	// (kv_sync.go): a restart applies up to this much of each region's log
	// again.
	KVSyncTickTicks int
	// SnapMaxConcurrentSends and SnapMaxConcurrentReceives bound snapshot
	// transfers per store.
	SnapMaxConcurrentSends    int
	SnapMaxConcurrentReceives int
	// SnapSendTimeout bounds one snapshot transfer.
	SnapSendTimeout time.Duration
	// SnapGCInterval is how often stale snapshot files are removed;
	// SnapMaxAge is how old an unused file must be to go.
	SnapGCInterval time.Duration
	SnapMaxAge     time.Duration
	// SplitCheckTickTicks is how often a leader has its region measured.
	SplitCheckTickTicks int
	// RegionMaxSize and RegionMaxKeys: a region past either splits, at about
	// RegionSplitSize from its start.
	RegionMaxSize   uint64
	RegionMaxKeys   uint64
	RegionSplitSize uint64
	// RegionHeartbeatTickTicks is how often a leader reports its region.
	RegionHeartbeatTickTicks int
	// StoreHeartbeatInterval is how often the store reports its statistics.
	StoreHeartbeatInterval time.Duration
	// Scheduler is the store's scheduler client; nil runs without one (no
	// heartbeats, no splits).
	Scheduler SchedulerClient
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// FailPoint, if set, is asked at named points of crash-sensitive code
	// paths; returning true makes the store behave as if it crashed there
	// (the peer stops dead; the test then restarts the store). For
	// fault-injection tests only. Points: "snapshot-after-mark" (the
	// region is marked Applying, the raft state not yet at the snapshot)
	// and "snapshot-after-clear" (the old data is cleared, the new not
	// written).
	FailPoint func(name string) bool
}

// electionTimeout is the (unrandomized) election timeout as a duration.
func (c *Config) electionTimeout() time.Duration {
	return time.Duration(c.RaftElectionTicks) * c.RaftBaseTickInterval
}

// DefaultConfig returns the production defaults (DESIGN §8).
func DefaultConfig() Config {
	return Config{
		RaftBaseTickInterval:         100 * time.Millisecond,
		RaftHeartbeatTicks:           2,
		RaftElectionTicks:            10,
		RaftMaxSizePerMsg:            1 << 20,
		RaftMaxInflightMsgs:          256,
		RaftMaxCommittedSizePerReady: 16 << 20,
		RaftMaxUncommittedSize:       128 << 20,
		RaftEntryMaxSize:             24 << 20,
		RaftWorkers:                  min(max(runtime.GOMAXPROCS(0)/4, 1), 8),
		RaftMaxPeersPerRound:         256,
		RaftLogGCTickTicks:           10,
		RaftLogGCThreshold:           50,
		RaftLogGCCountLimit:          20000,
		RaftLogGCSizeLimit:           64 << 20,
		KVSyncTickTicks:              10,
		SnapMaxConcurrentSends:       4,
		SnapMaxConcurrentReceives:    4,
		SnapSendTimeout:              5 * time.Minute,
		SnapGCInterval:               time.Minute,
		SnapMaxAge:                   10 * time.Minute,
		SplitCheckTickTicks:          100,
		RegionMaxSize:                144 << 20,
		RegionMaxKeys:                1_440_000,
		RegionSplitSize:              96 << 20,
		RegionHeartbeatTickTicks:     100,
		StoreHeartbeatInterval:       10 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.RaftBaseTickInterval, d.RaftBaseTickInterval)
	setDefault(&c.RaftHeartbeatTicks, d.RaftHeartbeatTicks)
	setDefault(&c.RaftElectionTicks, d.RaftElectionTicks)
	setDefault(&c.RaftMaxSizePerMsg, d.RaftMaxSizePerMsg)
	setDefault(&c.RaftMaxInflightMsgs, d.RaftMaxInflightMsgs)
	setDefault(&c.RaftMaxCommittedSizePerReady, d.RaftMaxCommittedSizePerReady)
	setDefault(&c.RaftMaxUncommittedSize, d.RaftMaxUncommittedSize)
	setDefault(&c.RaftEntryMaxSize, d.RaftEntryMaxSize)
	setDefault(&c.RaftWorkers, d.RaftWorkers)
	setDefault(&c.RaftMaxPeersPerRound, d.RaftMaxPeersPerRound)
	setDefault(&c.RaftLogGCTickTicks, d.RaftLogGCTickTicks)
	setDefault(&c.RaftLogGCThreshold, d.RaftLogGCThreshold)
	setDefault(&c.RaftLogGCCountLimit, d.RaftLogGCCountLimit)
	setDefault(&c.RaftLogGCSizeLimit, d.RaftLogGCSizeLimit)
	setDefault(&c.KVSyncTickTicks, d.KVSyncTickTicks)
	setDefault(&c.SnapMaxConcurrentSends, d.SnapMaxConcurrentSends)
	setDefault(&c.SnapMaxConcurrentReceives, d.SnapMaxConcurrentReceives)
	setDefault(&c.SnapSendTimeout, d.SnapSendTimeout)
	setDefault(&c.SnapGCInterval, d.SnapGCInterval)
	setDefault(&c.SnapMaxAge, d.SnapMaxAge)
	setDefault(&c.SplitCheckTickTicks, d.SplitCheckTickTicks)
	setDefault(&c.RegionMaxSize, d.RegionMaxSize)
	setDefault(&c.RegionMaxKeys, d.RegionMaxKeys)
	setDefault(&c.RegionSplitSize, d.RegionSplitSize)
	setDefault(&c.RegionHeartbeatTickTicks, d.RegionHeartbeatTickTicks)
	setDefault(&c.StoreHeartbeatInterval, d.StoreHeartbeatInterval)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Validate reports configurations raft would reject or that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.RaftElectionTicks <= c.RaftHeartbeatTicks {
		errs = append(errs, fmt.Errorf("raft election ticks (%d) must exceed heartbeat ticks (%d)", c.RaftElectionTicks, c.RaftHeartbeatTicks))
	}
	if c.RaftEntryMaxSize > c.RaftMaxUncommittedSize {
		errs = append(errs, fmt.Errorf("raft entry max size (%d) exceeds max uncommitted size (%d)", c.RaftEntryMaxSize, c.RaftMaxUncommittedSize))
	}
	if c.RaftBaseTickInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("raft base tick interval %v is below 1ms", c.RaftBaseTickInterval))
	}
	if c.KVSyncTickTicks < 0 || (c.RaftBaseTickInterval > 0 && time.Duration(c.KVSyncTickTicks) > math.MaxInt64/c.RaftBaseTickInterval) {
		errs = append(errs, fmt.Errorf("kv sync ticks (%d) out of range", c.KVSyncTickTicks))
	}
	if c.SnapSendTimeout >= c.SnapMaxAge {
		errs = append(errs, fmt.Errorf("snapshot send timeout (%v) must be below the snapshot max age (%v)", c.SnapSendTimeout, c.SnapMaxAge))
	}
	if c.RegionSplitSize > c.RegionMaxSize {
		errs = append(errs, fmt.Errorf("region split size (%d) exceeds the region max size (%d)", c.RegionSplitSize, c.RegionMaxSize))
	}
	if c.RaftLogGCThreshold > c.RaftLogGCCountLimit {
		errs = append(errs, fmt.Errorf("raft log gc threshold (%d) exceeds the count limit (%d)", c.RaftLogGCThreshold, c.RaftLogGCCountLimit))
	}
	return errors.Join(errs...)
}

func (c Config) failPoint(name string) bool { return c.FailPoint != nil && c.FailPoint(name) }
