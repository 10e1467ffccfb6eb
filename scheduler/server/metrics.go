package server

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics live in the default Prometheus registry (which the embedded etcd
// uses too), so /metrics shows both.
var (
	grpcDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "regionkv", Subsystem: "scheduler", Name: "grpc_duration_seconds",
		Help:    "Latency of Scheduler gRPC calls (streams: lifetime), by method and gRPC code.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"method", "code"})
	regionHeartbeats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "regionkv", Subsystem: "scheduler", Name: "region_heartbeats_total",
		Help: "Region heartbeats handled, by result (OK or the error type).",
	}, []string{"result"})
	storeHeartbeats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "regionkv", Subsystem: "scheduler", Name: "store_heartbeats_total",
		Help: "Store heartbeats handled, by result (OK or the error type).",
	}, []string{"result"})
	leaderGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "regionkv", Subsystem: "scheduler", Name: "is_leader",
		Help: "1 while the member leads.",
	}, []string{"member"})
	operatorsCreated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "regionkv", Subsystem: "scheduler", Name: "operators_created_total",
		Help: "Operators created, by creator (replica-checker, balance-region, balance-leader).",
	}, []string{"kind"})
	stateCollector = &clusterCollector{servers: make(map[*Server]struct{})}
)

func init() {
	prometheus.MustRegister(grpcDuration, regionHeartbeats, storeHeartbeats, leaderGauge, operatorsCreated, stateCollector)
}

func registerMetrics(s *Server) {
	stateCollector.mu.Lock()
	defer stateCollector.mu.Unlock()
	stateCollector.servers[s] = struct{}{}
	leaderGauge.WithLabelValues(s.cfg.Name).Set(0)
}

func unregisterMetrics(s *Server) {
	stateCollector.mu.Lock()
	defer stateCollector.mu.Unlock()
	delete(stateCollector.servers, s)
	leaderGauge.DeleteLabelValues(s.cfg.Name)
}

func unaryMetricsInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	grpcDuration.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

func streamMetricsInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	grpcDuration.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return err
}

// clusterCollector exports the cluster state of every leading member of
// this process (normally one) at scrape time.
type clusterCollector struct {
	mu      sync.Mutex
	servers map[*Server]struct{}
}

var (
	regionCountDesc = prometheus.NewDesc("regionkv_scheduler_regions", "Regions known to the leader.", []string{"member"}, nil)
	storeCountDesc  = prometheus.NewDesc("regionkv_scheduler_stores", "Stores by state (Up, Offline, Tombstone, Down).", []string{"member", "state"}, nil)
	storeRegionDesc = prometheus.NewDesc("regionkv_scheduler_store_regions", "Region peers per store.", []string{"member", "store"}, nil)
	storeLeaderDesc = prometheus.NewDesc("regionkv_scheduler_store_leaders", "Region leaders per store.", []string{"member", "store"}, nil)
	storeSizeDesc   = prometheus.NewDesc("regionkv_scheduler_store_region_size_bytes", "Summed approximate size of the regions with a peer on the store.", []string{"member", "store"}, nil)
)

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{regionCountDesc, storeCountDesc, storeRegionDesc, storeLeaderDesc, storeSizeDesc} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	var terms []*leaderTerm
	var names []string
	for s := range c.servers {
		if t := s.term.Load(); t != nil {
			terms, names = append(terms, t), append(names, s.cfg.Name)
		}
	}
	c.mu.Unlock()
	for i, t := range terms {
		name := names[i]
		ch <- prometheus.MustNewConstMetric(regionCountDesc, prometheus.GaugeValue, float64(t.cluster.RegionCount()), name)
		states := map[string]int{"Up": 0, "Offline": 0, "Tombstone": 0, "Down": 0}
		for _, st := range t.cluster.StoreStatuses() {
			states[st.Store.State().String()]++
			if st.Down {
				states["Down"]++
			}
			if st.Store.IsTombstone() {
				continue
			}
			id := uintString(st.Store.ID())
			ch <- prometheus.MustNewConstMetric(storeRegionDesc, prometheus.GaugeValue, float64(st.RegionCount), name, id)
			ch <- prometheus.MustNewConstMetric(storeLeaderDesc, prometheus.GaugeValue, float64(st.LeaderCount), name, id)
			ch <- prometheus.MustNewConstMetric(storeSizeDesc, prometheus.GaugeValue, float64(st.RegionSize), name, id)
		}
		for state, n := range states {
			ch <- prometheus.MustNewConstMetric(storeCountDesc, prometheus.GaugeValue, float64(n), name, state)
		}
	}
}
