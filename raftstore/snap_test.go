package raftstore

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

func openTestEngines(t testing.TB) *engine.Engines {
	t.Helper()
	eng, err := engine.Open(t.TempDir(), engine.SmallOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng
}

// fillRegion writes n keys of valueSize bytes into every column family.
func fillRegion(t testing.TB, eng *engine.Engines, prefix string, n, valueSize int) {
	t.Helper()
	var wb engine.WriteBatch
	for _, cf := range engine.CFs {
		cfb, _ := engine.CFByte(cf)
		for i := range n {
			wb.Set(engine.DataKey(cfb, []byte(fmt.Sprintf("%s%08d", prefix, i))), bytes.Repeat([]byte{byte(i)}, valueSize))
			if wb.Size() > 2<<20 {
				if err := wb.Commit(eng.KV); err != nil {
					t.Fatal(err)
				}
				wb.Reset()
			}
		}
	}
	if err := wb.Commit(eng.KV); err != nil {
		t.Fatal(err)
	}
}

func testRegion(start, end string) *metapb.Region {
	return &metapb.Region{
		Id: 7, StartKey: []byte(start), EndKey: []byte(end),
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1},
		Peers:       []*metapb.Peer{{Id: 70, StoreId: 1}},
	}
}

// transferSnapshot builds a snapshot of region on src and receives it on dst.
func transferSnapshot(t testing.TB, src, dst *snapManager, srcEng *engine.Engines, key SnapKey, region *metapb.Region) *rspb.RaftSnapshotData {
	t.Helper()
	txn := srcEng.KV.NewTransaction(false)
	data, err := src.buildSnapshot(txn, key, region)
	txn.Discard()
	if err != nil {
		t.Fatal(err)
	}
	r, err := src.openSnapshot(key, data)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := dst.receiveSnapshot(key, data, r); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSnapshotRoundTrip(t *testing.T) {
	srcEng, dstEng := openTestEngines(t), openTestEngines(t)
	fillRegion(t, srcEng, "a", 100, 100)
	fillRegion(t, srcEng, "m", 100, 100) // outside the region: must not travel
	fillRegion(t, dstEng, "a", 50, 7)    // stale data in the region: must go
	src, _ := newSnapManager(filepath.Join(t.TempDir(), "src"))
	dst, _ := newSnapManager(filepath.Join(t.TempDir(), "dst"))
	region := testRegion("a", "m")
	key := SnapKey{RegionID: region.Id, Term: 6, Index: 42}
	data := transferSnapshot(t, src, dst, srcEng, key, region)
	if len(data.Files) != len(engine.CFs) || data.FileSize == 0 {
		t.Fatalf("snapshot data %v", data)
	}
	if err := applySnapshotData(dstEng, dst, key, data, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, cf := range engine.CFs {
		snap := NewRegionSnapshot(dstEng.KV, &metapb.Region{})
		kvs, err := snap.Scan(cf, nil, nil, 0, false, false)
		snap.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(kvs) != 100 {
			t.Fatalf("cf %s: %d keys after apply, want 100", cf, len(kvs))
		}
		for i, kv := range kvs {
			if want := fmt.Sprintf("a%08d", i); string(kv.Key) != want || len(kv.Value) != 100 {
				t.Fatalf("cf %s key %d = %q (%d bytes), want %q", cf, i, kv.Key, len(kv.Value), want)
			}
		}
	}
	var st rspb.RegionLocalState
	if err := engine.GetMsg(dstEng.KV, engine.RegionStateKey(region.Id), &st); err != nil || st.State != rspb.PeerState_Normal {
		t.Fatalf("region state %v, %v", &st, err)
	}
	if entries, _ := os.ReadDir(dst.dir); len(entries) != 0 {
		t.Fatalf("received files left after apply: %v", entries)
	}
}

func TestSnapshotReceiveRejectsCorruption(t *testing.T) {
	srcEng := openTestEngines(t)
	fillRegion(t, srcEng, "a", 20, 50)
	src, _ := newSnapManager(filepath.Join(t.TempDir(), "src"))
	dst, _ := newSnapManager(filepath.Join(t.TempDir(), "dst"))
	region := testRegion("", "")
	key := SnapKey{RegionID: region.Id, Term: 6, Index: 42}
	txn := srcEng.KV.NewTransaction(false)
	data, err := src.buildSnapshot(txn, key, region)
	txn.Discard()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := src.openSnapshot(key, data)
	raw, _ := io.ReadAll(r)
	r.Close()
	flipped := bytes.Clone(raw)
	flipped[len(flipped)/2] ^= 0xff
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"flipped byte", flipped},
		{"truncated", raw[:len(raw)-1]},
		{"extra byte", append(bytes.Clone(raw), 0)},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := dst.receiveSnapshot(key, data, bytes.NewReader(tc.body)); err == nil {
				t.Fatal("corrupt snapshot accepted")
			}
			if dst.hasReceived(key, data) {
				t.Fatal("files of a rejected snapshot kept")
			}
			if entries, _ := os.ReadDir(dst.dir); len(entries) != 0 {
				t.Fatalf("files left behind: %v", entries)
			}
		})
	}
}

func TestSnapshotGC(t *testing.T) {
	m, _ := newSnapManager(t.TempDir())
	old := filepath.Join(m.dir, "gen_1_2_3_default.snap")
	fresh := filepath.Join(m.dir, "rcv_1_2_4_default.snap")
	other := filepath.Join(m.dir, "LOCK")
	for _, p := range []string{old, fresh, other} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)
	os.Chtimes(other, past, past)
	if n := m.gc(10 * time.Minute); n != 1 {
		t.Fatalf("gc removed %d files, want 1", n)
	}
	for p, want := range map[string]bool{old: false, fresh: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

// BenchmarkSnapshot100MB measures the three stages of moving a 100 MB region
// (100k keys of 1 KiB, in the default column family): generating the files
// from a read transaction, receiving them (copy + checksum + fsync), and
// applying them (clear the range, write in batches, sync).
func BenchmarkSnapshot100MB(b *testing.B) {
	const n, size = 100_000, 1000
	srcEng, dstEng := openTestEngines(b), openTestEngines(b)
	var wb engine.WriteBatch
	cfb, _ := engine.CFByte(engine.CFDefault)
	for i := range n {
		wb.Set(engine.DataKey(cfb, []byte(fmt.Sprintf("k%08d", i))), bytes.Repeat([]byte{byte(i)}, size))
		if wb.Size() > 2<<20 {
			if err := wb.Commit(srcEng.KV); err != nil {
				b.Fatal(err)
			}
			wb.Reset()
		}
	}
	if err := wb.Commit(srcEng.KV); err != nil {
		b.Fatal(err)
	}
	src, _ := newSnapManager(filepath.Join(b.TempDir(), "src"))
	dst, _ := newSnapManager(filepath.Join(b.TempDir(), "dst"))
	region := testRegion("", "")
	var gen, recv, apply time.Duration
	var bytesMoved uint64
	b.ResetTimer()
	for i := range b.N {
		key := SnapKey{RegionID: region.Id, Term: 6, Index: uint64(100 + i)}
		start := time.Now()
		txn := srcEng.KV.NewTransaction(false)
		data, err := src.buildSnapshot(txn, key, region)
		txn.Discard()
		if err != nil {
			b.Fatal(err)
		}
		gen += time.Since(start)
		start = time.Now()
		r, _ := src.openSnapshot(key, data)
		if err := dst.receiveSnapshot(key, data, r); err != nil {
			b.Fatal(err)
		}
		r.Close()
		recv += time.Since(start)
		start = time.Now()
		if err := applySnapshotData(dstEng, dst, key, data, region, nil); err != nil {
			b.Fatal(err)
		}
		apply += time.Since(start)
		src.remove("gen", key)
		bytesMoved = data.FileSize
	}
	mb := float64(bytesMoved) / (1 << 20) * float64(b.N)
	b.ReportMetric(mb/gen.Seconds(), "gen-MB/s")
	b.ReportMetric(mb/recv.Seconds(), "recv-MB/s")
	b.ReportMetric(mb/apply.Seconds(), "apply-MB/s")
}
