package raftstore

import "go.etcd.io/raft/v3/raftpb"

// entryCacheMaxBytes bounds one peer's cache of recent log entries. Entries
// are appended on persist and dropped once applied (and, past this bound,
// from the front).
const entryCacheMaxBytes = 4 << 20

// entryCache keeps the most recently persisted entries of one peer, so that
// applying committed entries and replicating to followers that are slightly
// behind do not read the raft log. It holds a contiguous run of indexes.
type entryCache struct {
	ents []raftpb.Entry // ents[i].Index == ents[0].Index+i
	size int
}

func (c *entryCache) first() uint64 { return c.ents[0].Index }
func (c *entryCache) last() uint64  { return c.ents[len(c.ents)-1].Index }

// append adds freshly persisted entries; entries at or after ents[0].Index
// (a conflicting tail) are replaced.
func (c *entryCache) append(ents []raftpb.Entry) {
	if len(ents) == 0 {
		return
	}
	if len(c.ents) > 0 {
		switch first := ents[0].Index; {
		case first <= c.first() || first > c.last()+1:
			c.reset()
		case first <= c.last():
			for _, e := range c.ents[first-c.first():] {
				c.size -= e.Size()
			}
			clear(c.ents[first-c.first():])
			c.ents = c.ents[:first-c.first()]
		}
	}
	for i := range ents {
		c.size += ents[i].Size()
	}
	c.ents = append(c.ents, ents...)
	for c.size > entryCacheMaxBytes && len(c.ents) > 1 {
		c.dropFront(1)
	}
}

func (c *entryCache) reset() {
	clear(c.ents)
	c.ents = c.ents[:0]
	c.size = 0
}

func (c *entryCache) dropFront(n int) {
	for _, e := range c.ents[:n] {
		c.size -= e.Size()
	}
	clear(c.ents[:n])
	c.ents = c.ents[n:]
	if len(c.ents) == 0 {
		c.ents = nil
	}
}

// compactTo drops entries below idx (they have been applied).
func (c *entryCache) compactTo(idx uint64) {
	if len(c.ents) == 0 || idx <= c.first() {
		return
	}
	c.dropFront(int(min(idx-c.first(), uint64(len(c.ents)))))
}

func (c *entryCache) term(i uint64) (uint64, bool) {
	if len(c.ents) == 0 || i < c.first() || i > c.last() {
		return 0, false
	}
	return c.ents[i-c.first()].Term, true
}

// slice returns a fresh copy of [lo, hi) limited to maxSize bytes (at least
// one entry, as raft's limitSize), if the cache holds all of it.
func (c *entryCache) slice(lo, hi, maxSize uint64) ([]raftpb.Entry, bool) {
	if len(c.ents) == 0 || lo < c.first() || hi-1 > c.last() {
		return nil, false
	}
	src := c.ents[lo-c.first() : hi-c.first()]
	n, size := 1, uint64(src[0].Size())
	for ; n < len(src); n++ {
		size += uint64(src[n].Size())
		if size > maxSize {
			break
		}
	}
	return append([]raftpb.Entry(nil), src[:n]...), true
}
