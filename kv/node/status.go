package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/kv/server"
	"github.com/regionkv/regionkv/raftstore"
)

// statusHandler serves /status (JSON), /metrics (Prometheus) and
// /debug/pprof/.
func (n *Node) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", n.handleStatus)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// StatusJSON is what /status answers.
type StatusJSON struct {
	Version       string       `json:"version"`
	StoreID       uint64       `json:"store_id"`
	ClusterID     string       `json:"cluster_id"` // a string: JSON numbers lose 64-bit precision
	Address       string       `json:"address"`
	StatusAddress string       `json:"status_address"`
	DataDir       string       `json:"data_dir"`
	StartTime     time.Time    `json:"start_time"`
	RegionCount   int          `json:"region_count"`
	LeaderCount   int          `json:"leader_count"`
	Regions       []RegionJSON `json:"regions"`
}

// RegionJSON is one region's peer on this store, in /status.
type RegionJSON struct {
	RegionID     uint64 `json:"region_id"`
	PeerID       uint64 `json:"peer_id"`
	StartKey     string `json:"start_key"` // hex
	EndKey       string `json:"end_key"`   // hex; empty: +infinity
	ConfVer      uint64 `json:"conf_ver"`
	Version      uint64 `json:"version"`
	Peers        int    `json:"peers"`
	RaftState    string `json:"raft_state"`
	LeaderID     uint64 `json:"leader_id"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

// Status returns the store's status, as /status shows it.
func (n *Node) Status() StatusJSON {
	st := StatusJSON{
		Version: Version, StoreID: n.storeID, ClusterID: strconv.FormatUint(n.clusterID, 10),
		Address: n.advertise, StatusAddress: n.StatusAddr(), DataDir: n.cfg.DataDir, StartTime: n.startTime,
		Regions: []RegionJSON{},
	}
	for _, p := range n.store.PeerStatuses() {
		if p == nil {
			continue
		}
		st.RegionCount++
		if p.IsLeader() {
			st.LeaderCount++
		}
		st.Regions = append(st.Regions, regionView(p))
	}
	return st
}

func regionView(p *raftstore.PeerStatus) RegionJSON {
	r := p.Region
	return RegionJSON{
		RegionID: p.RegionID, PeerID: p.PeerID,
		StartKey: hex.EncodeToString(r.GetStartKey()), EndKey: hex.EncodeToString(r.GetEndKey()),
		ConfVer: r.GetRegionEpoch().GetConfVer(), Version: r.GetRegionEpoch().GetVersion(), Peers: len(r.GetPeers()),
		RaftState: p.RaftState.String(), LeaderID: p.LeaderID, Term: p.Term,
		CommitIndex: p.CommitIndex, AppliedIndex: p.AppliedIndex,
	}
}

func (n *Node) handleStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(n.Status())
}

// metrics are a store's Prometheus metrics, in a registry of its own (so
// that several stores can live in one test process).
type metrics struct {
	reg          *prometheus.Registry
	grpcDuration *prometheus.HistogramVec
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		grpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "regionkv", Subsystem: "store", Name: "grpc_duration_seconds",
			Help:    "Latency of Kv gRPC calls (streams: lifetime), by method and gRPC code.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"method", "code"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpcDuration,
		&storeCollector{n: n},
	)
	return m
}

func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.grpcDuration.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

// observeBatched records a request served on a BatchCommands stream as its
// unary call would have been recorded.
func (m *metrics) observeBatched(method string, code codes.Code, elapsed time.Duration) {
	m.grpcDuration.WithLabelValues(method, code.String()).Observe(elapsed.Seconds())
}

func (m *metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.grpcDuration.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return err
}

var (
	regionsDesc  = prometheus.NewDesc("regionkv_store_regions", "Regions with a peer on this store.", nil, nil)
	leadersDesc  = prometheus.NewDesc("regionkv_store_leaders", "Regions this store leads.", nil, nil)
	msgSentDesc  = prometheus.NewDesc("regionkv_store_raft_messages_sent_total", "Raft messages written to a raft connection to another store.", nil, nil)
	msgDropDesc  = prometheus.NewDesc("regionkv_store_raft_messages_dropped_total", "Raft messages dropped (queue full, store unreachable, connection broken).", nil, nil)
	batchesDesc  = prometheus.NewDesc("regionkv_store_raft_batches_sent_total", "Raft message batches sent.", nil, nil)
	snapSentDesc = prometheus.NewDesc("regionkv_store_snapshots_sent_total", "Snapshots sent and acknowledged, and failed, by result.", []string{"result"}, nil)
	snapByteDesc = prometheus.NewDesc("regionkv_store_snapshot_sent_bytes_total", "Data bytes of the snapshots sent.", nil, nil)
	msgRecvDesc  = prometheus.NewDesc("regionkv_store_raft_messages_received_total", "Raft messages received from other stores and handed to the raftstore.", nil, nil)
	rconnsDesc   = prometheus.NewDesc("regionkv_store_raft_connections", "Raft connections from other stores open now.", nil, nil)
	rbadDesc     = prometheus.NewDesc("regionkv_store_raft_connections_refused_total", "Raft connections refused or ended for a bad hello, another store's id, or a bad frame.", nil, nil)
	reconnDesc   = prometheus.NewDesc("regionkv_store_transport_reconnects_total", "Raft connections reopened after a failure.", nil, nil)

	roundsDesc    = prometheus.NewDesc("regionkv_raftstore_rounds_total", "Raft worker rounds.", nil, nil)
	readyDesc     = prometheus.NewDesc("regionkv_raftstore_ready_peers_total", "Peers with a Ready, summed over rounds.", nil, nil)
	raftSyncDesc  = prometheus.NewDesc("regionkv_raftstore_raft_syncs_total", "Raft log batch writes, each one fsync.", nil, nil)
	raftSyncSecs  = prometheus.NewDesc("regionkv_raftstore_raft_sync_seconds_total", "Time spent writing raft log batches.", nil, nil)
	fdatasyncDesc = prometheus.NewDesc("regionkv_raftstore_fdatasyncs_total", "fdatasync calls on the raft log's segments.", nil, nil)
	fdatasyncSecs = prometheus.NewDesc("regionkv_raftstore_fdatasync_seconds_total", "Time spent in fdatasync of the raft log's segments.", nil, nil)
	appendedDesc  = prometheus.NewDesc("regionkv_raftstore_entries_appended_total", "Log entries written to the raft log.", nil, nil)
	kvCommitDesc  = prometheus.NewDesc("regionkv_raftstore_kv_commits_total", "kv-DB transactions of applied entries.", nil, nil)
	kvCommitSecs  = prometheus.NewDesc("regionkv_raftstore_kv_commit_seconds_total", "Time from handing applied entries to the kv DB until Badger has written them (the raft worker does not wait for it).", nil, nil)
	appliedDesc   = prometheus.NewDesc("regionkv_raftstore_entries_applied_total", "Committed entries handed to apply.", nil, nil)
	kvSyncDesc    = prometheus.NewDesc("regionkv_raftstore_kv_syncs_total", "kv-DB syncs that let applied entries' RaftApplyStates be written.", nil, nil)
	localReadDesc = prometheus.NewDesc("regionkv_raftstore_local_reads_total", "Reads answered from a leader lease, without a ReadIndex round.", nil, nil)
	heldAppsDesc  = prometheus.NewDesc("regionkv_raftstore_commit_appends_held_total", "Commit-only appends a leader held back.", nil, nil)
	dropAppsDesc  = prometheus.NewDesc("regionkv_raftstore_commit_appends_dropped_total", "Held commit-only appends dropped because a later append carried the commit.", nil, nil)
)

// storeCollector reads the raftstore's and the transport's counts at scrape
// time.
type storeCollector struct{ n *Node }

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	var regions, leaders int
	for _, p := range c.n.store.PeerStatuses() {
		if p == nil {
			continue
		}
		regions++
		if p.IsLeader() {
			leaders++
		}
	}
	ch <- prometheus.MustNewConstMetric(regionsDesc, prometheus.GaugeValue, float64(regions))
	ch <- prometheus.MustNewConstMetric(leadersDesc, prometheus.GaugeValue, float64(leaders))
	st := c.n.trans.Stats()
	ch <- prometheus.MustNewConstMetric(msgSentDesc, prometheus.CounterValue, float64(st.MessagesSent))
	ch <- prometheus.MustNewConstMetric(msgDropDesc, prometheus.CounterValue, float64(st.MessagesDropped))
	ch <- prometheus.MustNewConstMetric(batchesDesc, prometheus.CounterValue, float64(st.BatchesSent))
	ch <- prometheus.MustNewConstMetric(snapSentDesc, prometheus.CounterValue, float64(st.SnapshotsSent), "ok")
	ch <- prometheus.MustNewConstMetric(snapSentDesc, prometheus.CounterValue, float64(st.SnapshotsFailed), "failed")
	ch <- prometheus.MustNewConstMetric(snapByteDesc, prometheus.CounterValue, float64(st.SnapshotBytes))
	ch <- prometheus.MustNewConstMetric(reconnDesc, prometheus.CounterValue, float64(st.Reconnects))
	var rst server.RaftStats
	if c.n.kv != nil { // nil while the metrics are registered, before serving
		rst = c.n.kv.RaftStats()
	}
	ch <- prometheus.MustNewConstMetric(msgRecvDesc, prometheus.CounterValue, float64(rst.MessagesReceived))
	ch <- prometheus.MustNewConstMetric(rconnsDesc, prometheus.GaugeValue, float64(rst.Connections))
	ch <- prometheus.MustNewConstMetric(rbadDesc, prometheus.CounterValue, float64(rst.BadConnections))
	rs := c.n.store.Stats()
	ch <- prometheus.MustNewConstMetric(roundsDesc, prometheus.CounterValue, float64(rs.Rounds))
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.CounterValue, float64(rs.ReadyPeers))
	ch <- prometheus.MustNewConstMetric(raftSyncDesc, prometheus.CounterValue, float64(rs.RaftSyncs))
	ch <- prometheus.MustNewConstMetric(raftSyncSecs, prometheus.CounterValue, rs.RaftSyncTime.Seconds())
	ch <- prometheus.MustNewConstMetric(fdatasyncDesc, prometheus.CounterValue, float64(rs.Fdatasyncs))
	ch <- prometheus.MustNewConstMetric(fdatasyncSecs, prometheus.CounterValue, rs.FdatasyncTime.Seconds())
	ch <- prometheus.MustNewConstMetric(appendedDesc, prometheus.CounterValue, float64(rs.EntriesAppended))
	ch <- prometheus.MustNewConstMetric(kvCommitDesc, prometheus.CounterValue, float64(rs.KVCommits))
	ch <- prometheus.MustNewConstMetric(kvSyncDesc, prometheus.CounterValue, float64(rs.KVSyncs))
	ch <- prometheus.MustNewConstMetric(kvCommitSecs, prometheus.CounterValue, rs.KVCommitTime.Seconds())
	ch <- prometheus.MustNewConstMetric(appliedDesc, prometheus.CounterValue, float64(rs.EntriesApplied))
	ch <- prometheus.MustNewConstMetric(localReadDesc, prometheus.CounterValue, float64(rs.LocalReads))
	ch <- prometheus.MustNewConstMetric(heldAppsDesc, prometheus.CounterValue, float64(rs.CommitAppendsHeld))
	ch <- prometheus.MustNewConstMetric(dropAppsDesc, prometheus.CounterValue, float64(rs.CommitAppendsDropped))
}
