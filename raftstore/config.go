package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
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
	// RaftWorkers is the size of the raft worker pool.
	RaftWorkers int
	// RaftMaxPeersPerRound caps how many peers one worker round handles, and
	// so how many peers share one fsync.
	RaftMaxPeersPerRound int
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
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
		RaftWorkers:                  2,
		RaftMaxPeersPerRound:         256,
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
	return errors.Join(errs...)
}
