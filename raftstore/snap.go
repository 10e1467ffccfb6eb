package raftstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// Snapshot files. A region snapshot is one file per column family, holding
// the region's data keys (with their 'z'+cf prefix) as length-prefixed
// records:
//
//	uvarint(len(key)) key uvarint(len(value)) value
//
// Each file's size and CRC-32C go into RaftSnapshotData, which travels inside
// the raft MsgSnap; the files themselves move out of band. A store keeps them
// under <data-dir>/snap: gen_<region>_<term>_<index>_<cf>.snap for snapshots
// it generated, rcv_... for ones it received. Sent files are deleted once the
// send is reported, received ones once applied, and anything left behind by
// a crash or a dropped message by the periodic GC.

// SnapKey names one snapshot.
type SnapKey struct {
	RegionID, Term, Index uint64
}

func (k SnapKey) String() string { return fmt.Sprintf("%d_%d_%d", k.RegionID, k.Term, k.Index) }

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// snapManager owns the snapshot directory. Its methods are safe for
// concurrent use: every snapshot has its own files.
type snapManager struct {
	dir string
}

func newSnapManager(dir string) (*snapManager, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("snapshot dir: %w", err)
	}
	return &snapManager{dir: dir}, nil
}

func (m *snapManager) path(prefix string, key SnapKey, cf string) string {
	return filepath.Join(m.dir, fmt.Sprintf("%s_%s_%s.snap", prefix, key, cf))
}

// remove deletes a snapshot's files.
func (m *snapManager) remove(prefix string, key SnapKey) {
	for _, cf := range engine.CFs {
		if err := os.Remove(m.path(prefix, key, cf)); err != nil && !errors.Is(err, os.ErrNotExist) {
			// Left for the periodic GC.
			continue
		}
	}
}

// gc deletes snapshot files older than maxAge. A file in use is never that
// old: sends time out sooner (SnapSendTimeout < SnapMaxAge is validated), a
// received snapshot is applied in the round raft accepts it, and a store
// restarted in the middle of applying one finishes before GC first runs.
func (m *snapManager) gc(maxAge time.Duration) (removed int) {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return 0
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".snap") && !strings.HasSuffix(name, ".tmp") {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < maxAge {
			continue
		}
		if os.Remove(filepath.Join(m.dir, name)) == nil {
			removed++
		}
	}
	return removed
}

// recordWriter writes records to a file and tracks its size and checksum.
type recordWriter struct {
	f    *os.File
	w    *bufio.Writer
	crc  hash.Hash32
	size uint64
	buf  [binary.MaxVarintLen64]byte
}

func createRecordFile(path string) (*recordWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	rw := &recordWriter{f: f, crc: crc32.New(crcTable)}
	rw.w = bufio.NewWriterSize(io.MultiWriter(f, rw.crc), 256<<10)
	return rw, nil
}

func (rw *recordWriter) write(p []byte) error {
	n := binary.PutUvarint(rw.buf[:], uint64(len(p)))
	if _, err := rw.w.Write(rw.buf[:n]); err != nil {
		return err
	}
	_, err := rw.w.Write(p)
	rw.size += uint64(n + len(p))
	return err
}

// finish flushes, syncs and closes the file.
func (rw *recordWriter) finish() error {
	err := rw.w.Flush()
	if err == nil {
		err = rw.f.Sync()
	}
	return errors.Join(err, rw.f.Close())
}

// buildSnapshot writes the region's data visible in txn into snapshot files
// and returns their description. The files are synced.
func (m *snapManager) buildSnapshot(txn *badger.Txn, key SnapKey, region *metapb.Region) (*rspb.RaftSnapshotData, error) {
	data := &rspb.RaftSnapshotData{Region: region}
	for _, cf := range engine.CFs {
		f, err := m.buildCF(txn, key, region, cf)
		if err != nil {
			m.remove("gen", key)
			return nil, err
		}
		data.Files = append(data.Files, f)
		data.FileSize += f.Length
	}
	return data, nil
}

func (m *snapManager) buildCF(txn *badger.Txn, key SnapKey, region *metapb.Region, cf string) (*rspb.SnapshotCFFile, error) {
	cfb, _ := engine.CFByte(cf)
	rw, err := createRecordFile(m.path("gen", key, cf))
	if err != nil {
		return nil, err
	}
	lo, hi := engine.DataRange(cfb, region.StartKey, region.EndKey)
	it := engine.NewRangeIter(txn, lo, hi, false, false)
	for ; it.Valid() && err == nil; it.Next() {
		if err = rw.write(it.Key()); err == nil {
			err = it.Item().Value(rw.write)
		}
	}
	it.Close()
	if ferr := rw.finish(); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("build snapshot %s cf %s: %w", key, cf, err)
	}
	return &rspb.SnapshotCFFile{Cf: cf, Length: rw.size, Checksum: rw.crc.Sum32()}, nil
}

// openSnapshot returns a reader of a generated snapshot's files, concatenated
// in the order of data.Files: what the transport streams.
func (m *snapManager) openSnapshot(key SnapKey, data *rspb.RaftSnapshotData) (io.ReadCloser, error) {
	var files []*os.File
	var readers []io.Reader
	for _, f := range data.Files {
		fh, err := os.Open(m.path("gen", key, f.Cf))
		if err != nil {
			for _, o := range files {
				o.Close()
			}
			return nil, err
		}
		files = append(files, fh)
		readers = append(readers, fh)
	}
	return &multiReadCloser{Reader: io.MultiReader(readers...), files: files}, nil
}

type multiReadCloser struct {
	io.Reader
	files []*os.File
}

func (r *multiReadCloser) Close() error {
	var errs []error
	for _, f := range r.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// receiveSnapshot reads a snapshot's concatenated files from r into rcv_
// files, verifying every file's size and checksum. Nothing is left behind if
// it fails.
func (m *snapManager) receiveSnapshot(key SnapKey, data *rspb.RaftSnapshotData, r io.Reader) error {
	for _, f := range data.Files {
		if _, err := engine.CFByte(f.Cf); err != nil || f.Cf == "" {
			m.remove("rcv", key)
			return fmt.Errorf("snapshot %s: bad column family %q", key, f.Cf)
		}
		if err := m.receiveFile(m.path("rcv", key, f.Cf), f, r); err != nil {
			m.remove("rcv", key)
			return fmt.Errorf("snapshot %s cf %s: %w", key, f.Cf, err)
		}
	}
	// Nothing may follow the last file.
	if n, _ := io.CopyN(io.Discard, r, 1); n != 0 {
		m.remove("rcv", key)
		return fmt.Errorf("snapshot %s: more data than its files describe", key)
	}
	return nil
}

func (m *snapManager) receiveFile(path string, f *rspb.SnapshotCFFile, r io.Reader) error {
	tmp := path + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	crc := crc32.New(crcTable)
	n, err := io.Copy(io.MultiWriter(out, crc), io.LimitReader(r, int64(f.Length)))
	if err == nil && uint64(n) != f.Length {
		err = fmt.Errorf("got %d bytes, want %d", n, f.Length)
	}
	if err == nil && crc.Sum32() != f.Checksum {
		err = fmt.Errorf("checksum %08x, want %08x", crc.Sum32(), f.Checksum)
	}
	if err == nil {
		err = out.Sync()
	}
	err = errors.Join(err, out.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// hasReceived reports whether a received snapshot's files are all present
// with the right sizes.
func (m *snapManager) hasReceived(key SnapKey, data *rspb.RaftSnapshotData) bool {
	for _, f := range data.Files {
		st, err := os.Stat(m.path("rcv", key, f.Cf))
		if err != nil || uint64(st.Size()) != f.Length {
			return false
		}
	}
	return len(data.Files) > 0
}

// forEachRecord calls fn for every (key, value) of a received snapshot, file
// by file, verifying checksums again as it reads.
func (m *snapManager) forEachRecord(key SnapKey, data *rspb.RaftSnapshotData, fn func(k, v []byte) error) error {
	for _, f := range data.Files {
		if err := readRecordFile(m.path("rcv", key, f.Cf), f, fn); err != nil {
			return fmt.Errorf("snapshot %s cf %s: %w", key, f.Cf, err)
		}
	}
	return nil
}

func readRecordFile(path string, f *rspb.SnapshotCFFile, fn func(k, v []byte) error) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	crc := crc32.New(crcTable)
	br := bufio.NewReaderSize(io.TeeReader(fh, crc), 256<<10)
	var k, v []byte
	for {
		k, err = readRecord(br, k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if v, err = readRecord(br, v); err != nil {
			return fmt.Errorf("record without a value: %w", err)
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	if crc.Sum32() != f.Checksum {
		return fmt.Errorf("checksum %08x, want %08x", crc.Sum32(), f.Checksum)
	}
	return nil
}

// readRecord reads one length-prefixed record into buf's memory.
func readRecord(br *bufio.Reader, buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, err
	}
	if n > 1<<30 {
		return nil, fmt.Errorf("record of %d bytes", n)
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, fmt.Errorf("short record: %w", err)
	}
	return buf, nil
}
