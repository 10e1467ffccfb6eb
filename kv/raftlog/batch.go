package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"

	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// Batch is a set of operations that Write makes one record, applied
// atomically. The zero value is empty and ready to use; Reset reuses one.
//
// The log's index learns a batch the way replay learns a record: by
// decoding it (Log.applyRecord), so the two cannot disagree.
type Batch struct {
	// buf is the record: header space, then the payload.
	buf []byte
	ops int
}

// Reset empties b, keeping its memory.
func (b *Batch) Reset() {
	b.buf = append(b.buf[:0], make([]byte, recHeader)...)
	b.ops = 0
}

func (b *Batch) init() {
	if len(b.buf) < recHeader {
		b.Reset()
	}
}

// Empty reports whether b holds no operation.
func (b *Batch) Empty() bool { return b.ops == 0 }

// Len returns the number of operations in b.
func (b *Batch) Len() int { return b.ops }

// Size returns the bytes b will write.
func (b *Batch) Size() int { return max(len(b.buf), recHeader) }

// seal checks b's size and fills in its record header (length and CRC) for
// segment id; what names the record in the error.
func (b *Batch) seal(id uint64, what string) error {
	n := len(b.buf) - recHeader
	if n > maxRecord {
		return fmt.Errorf("raftlog: %s of %d bytes exceeds %d", what, n, maxRecord)
	}
	binary.LittleEndian.PutUint32(b.buf[0:4], uint32(n))
	binary.LittleEndian.PutUint32(b.buf[4:8], checksum(id, b.buf[0:4], b.buf[recHeader:]))
	return nil
}

func (b *Batch) op(kind byte, region uint64) {
	b.init()
	b.ops++
	b.buf = append(b.buf, kind)
	b.buf = binary.AppendUvarint(b.buf, region)
}

// Append adds region's entries ents, which replace any entries from
// ents[0].Index on. It returns the size of their encodings.
func (b *Batch) Append(region uint64, ents []raftpb.Entry) int {
	if len(ents) == 0 {
		return 0
	}
	total := 0
	b.beginAppend(region, ents[0].Index, len(ents))
	for i := range ents {
		e := &ents[i]
		if e.Index != ents[0].Index+uint64(i) {
			panic(fmt.Sprintf("raftlog: region %d: entries not contiguous at %d", region, e.Index))
		}
		size := e.Size()
		total += size
		if _, err := e.MarshalToSizedBuffer(b.addEntry(e.Term, size)); err != nil {
			panic(fmt.Sprintf("raftlog: marshal entry: %v", err))
		}
	}
	return total
}

func (b *Batch) beginAppend(region, first uint64, count int) {
	b.op(opAppend, region)
	b.buf = binary.AppendUvarint(b.buf, first)
	b.buf = binary.AppendUvarint(b.buf, uint64(count))
}

// addEntry adds one entry of the open append and returns the space for its
// encoding.
func (b *Batch) addEntry(term uint64, size int) []byte {
	b.buf = binary.AppendUvarint(b.buf, term)
	b.buf = binary.AppendUvarint(b.buf, uint64(size))
	off := len(b.buf)
	b.buf = slices.Grow(b.buf, size)[:off+size]
	return b.buf[off:]
}

// SetState sets region's RaftLocalState.
func (b *Batch) SetState(region uint64, st *rspb.RaftLocalState) {
	size := st.Size()
	b.op(opState, region)
	b.buf = binary.AppendUvarint(b.buf, uint64(size))
	off := len(b.buf)
	b.buf = slices.Grow(b.buf, size)[:off+size]
	if _, err := st.MarshalToSizedBuffer(b.buf[off:]); err != nil {
		panic(fmt.Sprintf("raftlog: marshal state: %v", err))
	}
}

func (b *Batch) setState(region uint64, state []byte) {
	b.op(opState, region)
	b.buf = binary.AppendUvarint(b.buf, uint64(len(state)))
	b.buf = append(b.buf, state...)
}

// DeleteTo deletes region's entries below end. Only delete entries whose
// application is durable.
func (b *Batch) DeleteTo(region, end uint64) {
	b.op(opDeleteTo, region)
	b.buf = binary.AppendUvarint(b.buf, end)
}

// Clean deletes region's entries and state.
func (b *Batch) Clean(region uint64) {
	b.op(opClean, region)
}

// decoder reads a payload; the first error sticks.
type decoder struct {
	b   []byte
	pos int
	err error
}

var errShort = errors.New("truncated payload")

func (d *decoder) done() bool { return d.err != nil || d.pos >= len(d.b) }

func (d *decoder) byte() byte {
	if d.err != nil || d.pos >= len(d.b) {
		d.err = errShort
		return 0
	}
	d.pos++
	return d.b[d.pos-1]
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.pos:])
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) skip(n uint64) {
	if d.err == nil && n > uint64(len(d.b)-d.pos) {
		d.err = errShort
	}
	if d.err == nil {
		d.pos += int(n)
	}
}
