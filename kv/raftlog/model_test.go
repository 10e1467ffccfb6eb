package raftlog

import (
	"math/rand"
	"os"
	"testing"

	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// TestPurgeGap: a crash in purge can leave an older segment behind a removed
// newer one (unlinks need not reach the disk in order). Open must not replay
// across the gap, or a region cleaned in the removed segment would come back
// with its state and log.
func TestPurgeGap(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0) // segment 1
	write(t, l, func(b *Batch) {
		b.Append(1, ents(1, 1, 6))
		b.SetState(1, &rspb.RaftLocalState{LastIndex: 5})
		b.Append(2, ents(1, 1, 11))
		b.SetState(2, &rspb.RaftLocalState{LastIndex: 10})
	})
	l.Close()
	l = open(t, dir, 0) // segment 2: region 2 destroyed
	write(t, l, func(b *Batch) {
		b.Clean(2)
		b.Append(1, ents(1, 6, 11))
		b.DeleteTo(1, 6)
	})
	l.Close()
	l = open(t, dir, 0) // segment 3: region 1's live log moves on
	write(t, l, func(b *Batch) {
		b.Append(1, ents(1, 11, 16))
		b.SetState(1, &rspb.RaftLocalState{LastIndex: 15})
		b.DeleteTo(1, 11)
	})
	// No live entry is in segments 1 and 2 now: purge deletes both.
	// Simulate a crash in purge's loop after it removed 2 but not 1.
	if err := os.Remove(l.path(2)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = open(t, dir, 0)
	defer l.Close()
	checkLog(t, l, 1, 11, 16, term(1))
	checkState(t, l, 1, 15)
	checkState(t, l, 2, 0)
	checkLog(t, l, 2, 0, 0, nil)
}

// TestPinnedByLeftover: a region that gets no further DeleteTo (an idle
// region, or one whose last log-GC DeleteTo was lost in a crash) must not pin
// every segment from its oldest entry on: rotation carries its entries
// forward, and the log stays bounded.
func TestPinnedByLeftover(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 16<<10)
	defer l.Close()
	write(t, l, func(b *Batch) {
		b.Append(9, ents(1, 1, 200)) // ~5KB > 16KB/8
		b.SetState(9, &rspb.RaftLocalState{LastIndex: 199})
	})
	churn(t, l, 3000)
	if n := len(segments(t, dir)); n > 4 {
		t.Fatalf("%d segments left (%d bytes) for ~6KB of live log", n, l.Size())
	}
}

// modelRegion is what TestRandomModel expects of a region.
type modelRegion struct {
	first uint64
	terms []uint64
	state uint64 // LastIndex of the state; 0 none
}

// TestRandomModel drives the log with random batches (contiguous,
// conflicting and gapped appends, states, deletions, cleans) over small
// segments, so that rotation, rewrite and purge run often, and checks it
// against a model, live and after reopens.
func TestRandomModel(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rnd := rand.New(rand.NewSource(seed))
		dir := t.TempDir()
		seg := int64(4<<10 + rnd.Intn(16<<10))
		l := open(t, dir, seg)
		model := map[uint64]*modelRegion{}
		check := func(l *Log, when string, step int) {
			t.Helper()
			t.Logf("seed %d: checking the log %s after step %d", seed, when, step)
			for region := uint64(1); region <= 6; region++ {
				m := model[region]
				if m == nil {
					m = &modelRegion{}
				}
				checkState(t, l, region, m.state)
				checkLog(t, l, region, m.first, m.first+uint64(len(m.terms)), func(i uint64) uint64 { return m.terms[i-m.first] })
			}
		}
		var termc uint64 = 1
		for step := 0; step < 3000; step++ {
			var b Batch
			nops := 1 + rnd.Intn(3)
			for range nops {
				region := uint64(1 + rnd.Intn(6))
				m := model[region]
				if m == nil {
					m = &modelRegion{}
					model[region] = m
				}
				switch k := rnd.Intn(20); {
				case k < 12: // append: contiguous, conflict, or gap
					termc++
					n := uint64(1 + rnd.Intn(8))
					var at uint64
					last := m.first + uint64(len(m.terms)) - 1
					switch {
					case len(m.terms) == 0:
						at = uint64(1 + rnd.Intn(100))
					case rnd.Intn(6) == 0:
						at = m.first + uint64(rnd.Intn(len(m.terms)))
					case rnd.Intn(30) == 0:
						at = last + 2 + uint64(rnd.Intn(5))
					default:
						at = last + 1
					}
					b.Append(region, ents(termc, at, at+n))
					if len(m.terms) == 0 || at < m.first || at > last+1 {
						m.first, m.terms = at, nil
					} else {
						m.terms = m.terms[:at-m.first]
					}
					for range n {
						m.terms = append(m.terms, termc)
					}
				case k < 16:
					li := uint64(1 + rnd.Intn(1000))
					b.SetState(region, &rspb.RaftLocalState{LastIndex: li})
					m.state = li
				case k < 19:
					if len(m.terms) == 0 {
						continue
					}
					end := m.first + uint64(rnd.Intn(len(m.terms)+2))
					b.DeleteTo(region, end)
					if end > m.first {
						n := min(end-m.first, uint64(len(m.terms)))
						m.terms = m.terms[n:]
						m.first = end
						if len(m.terms) == 0 {
							m.first = 0
						}
					}
				default:
					b.Clean(region)
					delete(model, region)
				}
			}
			if err := l.Write(&b, rnd.Intn(2) == 0); err != nil {
				t.Fatal(err)
			}
			if step%500 == 499 {
				check(l, "live", step)
				l.Close()
				l = open(t, dir, seg)
				check(l, "reopened", step)
			}
		}
		l.Close()
	}
}
