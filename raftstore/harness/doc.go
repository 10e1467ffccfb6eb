// Package harness is the region test harness: an in-process cluster of
// stores on real Badger directories, the real raftstore, and a simulated
// network that can partition, drop, delay and cut messages.
//
// A test builds a Cluster with New, drives it with the client helpers
// (Put, Get, Delete, Scan and their Must forms), injects faults through
// Network and StopStore/StartStore, and, for randomized scenarios, records
// every client operation in a Recorder whose history is checked for
// linearizability with porcupine. RunScenario packages the common shape:
// clients, rounds, faults, a final read-back and the check.
//
// All randomness comes from one seed, printed at the start of each test.
// Set REGIONKV_SEED to replay a failure with the same seed (timing still
// varies, so a replay is likely, not certain, to take the same path).
package harness
