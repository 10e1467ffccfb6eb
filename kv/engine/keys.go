package engine

import (
	"encoding/binary"
	"fmt"
)

const (
	localPrefix      byte = 0x01
	storeIdentSuffix byte = 0x01
	regionRaftPrefix byte = 0x02
	regionMetaPrefix byte = 0x03

	raftLogSuffix    byte = 0x01
	raftStateSuffix  byte = 0x02
	applyStateSuffix byte = 0x03

	regionStateSuffix byte = 0x01

	dataPrefix byte = 'z'
)

// Column families. The raw API uses default; lock and write are reserved for
// a transactional layer.
const (
	CFDefault = "default"
	CFLock    = "lock"
	CFWrite   = "write"
)

// CFs lists every column family in key order.
var CFs = []string{CFDefault, CFLock, CFWrite}

const (
	cfDefaultByte byte = 'd'
	cfLockByte    byte = 'l'
	cfWriteByte   byte = 'w'
)

// CFByte returns the one-byte tag of a column family. The empty name means
// default. An unknown name is an error.
func CFByte(cf string) (byte, error) {
	switch cf {
	case "", CFDefault:
		return cfDefaultByte, nil
	case CFLock:
		return cfLockByte, nil
	case CFWrite:
		return cfWriteByte, nil
	}
	return 0, fmt.Errorf("unknown column family %q", cf)
}

// StoreIdentKey is where the store's StoreIdent lives in the kv DB.
var StoreIdentKey = []byte{localPrefix, storeIdentSuffix}

func regionKey(prefix byte, regionID uint64, suffix byte, extra int) []byte {
	k := make([]byte, 2+8+1, 2+8+1+extra)
	k[0] = localPrefix
	k[1] = prefix
	binary.BigEndian.PutUint64(k[2:], regionID)
	k[10] = suffix
	return k
}

// RaftLogKey is the key of a region's log entry at index in the raft DB of
// earlier versions (see legacy.go).
func RaftLogKey(regionID, index uint64) []byte {
	k := regionKey(regionRaftPrefix, regionID, raftLogSuffix, 8)
	return binary.BigEndian.AppendUint64(k, index)
}

// RaftLogPrefix is the prefix shared by all of a region's log entries.
func RaftLogPrefix(regionID uint64) []byte {
	return regionKey(regionRaftPrefix, regionID, raftLogSuffix, 0)
}

// RaftLogIndex decodes the index from a RaftLogKey.
func RaftLogIndex(key []byte) (uint64, error) {
	if len(key) != 19 || key[0] != localPrefix || key[1] != regionRaftPrefix || key[10] != raftLogSuffix {
		return 0, fmt.Errorf("not a raft log key: %x", key)
	}
	return binary.BigEndian.Uint64(key[11:]), nil
}

// RaftStateKey is the key of a region's RaftLocalState in the raft DB of
// earlier versions (see legacy.go).
func RaftStateKey(regionID uint64) []byte {
	return regionKey(regionRaftPrefix, regionID, raftStateSuffix, 0)
}

// ApplyStateKey is the kv DB key of a region's RaftApplyState.
func ApplyStateKey(regionID uint64) []byte {
	return regionKey(regionRaftPrefix, regionID, applyStateSuffix, 0)
}

// RegionStateKey is the kv DB key of a region's RegionLocalState.
func RegionStateKey(regionID uint64) []byte {
	return regionKey(regionMetaPrefix, regionID, regionStateSuffix, 0)
}

// RegionStatePrefix is the prefix of every RegionStateKey; scanning it finds
// all regions a store knows.
func RegionStatePrefix() []byte { return []byte{localPrefix, regionMetaPrefix} }

// RegionIDFromStateKey decodes the region id from a RegionStateKey.
func RegionIDFromStateKey(key []byte) (uint64, error) {
	if len(key) != 11 || key[0] != localPrefix || key[1] != regionMetaPrefix || key[10] != regionStateSuffix {
		return 0, fmt.Errorf("not a region state key: %x", key)
	}
	return binary.BigEndian.Uint64(key[2:10]), nil
}

// DataKey is the kv DB key of a user key in a column family.
func DataKey(cf byte, key []byte) []byte {
	k := make([]byte, 2+len(key))
	k[0] = dataPrefix
	k[1] = cf
	copy(k[2:], key)
	return k
}

// UserKey strips the data prefix and column family from a DataKey.
func UserKey(dataKey []byte) []byte {
	if len(dataKey) < 2 || dataKey[0] != dataPrefix {
		return nil
	}
	return dataKey[2:]
}

// DataRange returns the kv DB bounds [lo, hi) of the user keys [start, end)
// in a column family. An empty end means the end of the column family.
func DataRange(cf byte, start, end []byte) (lo, hi []byte) {
	lo = DataKey(cf, start)
	if len(end) == 0 {
		return lo, []byte{dataPrefix, cf + 1}
	}
	return lo, DataKey(cf, end)
}
