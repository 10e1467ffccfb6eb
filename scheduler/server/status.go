package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/cluster"
	"github.com/regionkv/regionkv/scheduler/schedulers"
)

// defaultRegionsLimit bounds /api/v1/regions without ?limit.
const defaultRegionsLimit = 1000

// statusHandler serves the status HTTP API:
//
//	/status                 version, cluster id, this member, the leader
//	/metrics                Prometheus metrics (ours and the embedded etcd's)
//	/debug/pprof/           Go profiles
//	/api/v1/health          this member's view: serving, leader, etcd members
//	/api/v1/stores          stores with their region and leader counts
//	/api/v1/store/{id}
//	/api/v1/regions         ?start=&end= (hex) &limit=
//	/api/v1/region/{id}
//	/api/v1/region/key/{key}  the key raw (URL-escaped), or hex with ?encoding=hex
//	/api/v1/operators       running operators and recently ended ones; POST adds
//	                        one, DELETE /api/v1/operators/{region_id} cancels
//	                        (operator_api.go)
//	/api/v1/schedulers      running and available balance schedulers; POST
//	                        {"name": ...} adds, DELETE .../{name} removes
//	/api/v1/config          GET; PUT/POST a JSON ClusterConfig to change it
//
// The /api/v1 cluster state is the leader's: other members redirect
// (307) to the leader's status address, or answer 503 when there is none.
func (s *Server) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /api/v1/health", s.handleHealth)
	mux.HandleFunc("GET /api/v1/stores", s.onLeader(s.handleStores))
	mux.HandleFunc("GET /api/v1/store/{id}", s.onLeader(s.handleStore))
	mux.HandleFunc("GET /api/v1/regions", s.onLeader(s.handleRegions))
	mux.HandleFunc("GET /api/v1/region/{id}", s.onLeader(s.handleRegion))
	mux.HandleFunc("GET /api/v1/region/key/{key...}", s.onLeader(s.handleRegionByKey))
	mux.HandleFunc("GET /api/v1/operators", s.onLeaderTerm(s.handleOperators))
	mux.HandleFunc("POST /api/v1/operators", s.onLeaderTerm(s.handleAddOperator))
	mux.HandleFunc("DELETE /api/v1/operators/{region_id}", s.onLeaderTerm(s.handleCancelOperator))
	mux.HandleFunc("GET /api/v1/schedulers", s.onLeaderTerm(s.handleSchedulers))
	mux.HandleFunc("POST /api/v1/schedulers", s.onLeaderTerm(s.handleAddScheduler))
	mux.HandleFunc("DELETE /api/v1/schedulers/{name}", s.onLeaderTerm(s.handleRemoveScheduler))
	mux.HandleFunc("GET /api/v1/config", s.onLeader(s.handleGetConfig))
	mux.HandleFunc("PUT /api/v1/config", s.onLeader(s.handlePutConfig))
	mux.HandleFunc("POST /api/v1/config", s.onLeader(s.handlePutConfig))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// onLeader runs h with the leader's cluster, or redirects to the leader.
func (s *Server) onLeader(h func(http.ResponseWriter, *http.Request, *cluster.Cluster)) http.HandlerFunc {
	return s.onLeaderTerm(func(w http.ResponseWriter, r *http.Request, t *leaderTerm) { h(w, r, t.cluster) })
}

// onLeaderTerm runs h with the leader term, or redirects to the leader.
func (s *Server) onLeaderTerm(h func(http.ResponseWriter, *http.Request, *leaderTerm)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if t := s.term.Load(); t != nil {
			h(w, r, t)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), etcdOpTimeout)
		defer cancel()
		leader, err := s.leader(ctx)
		if err != nil || leader == nil || leader.StatusAddress == "" || leader.Name == s.self.Name {
			writeError(w, http.StatusServiceUnavailable, errors.New("no scheduler leader"))
			return
		}
		u := *r.URL
		u.Scheme, u.Host = "http", leader.StatusAddress
		http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
	}
}

type memberJSON struct {
	Name           string   `json:"name"`
	MemberID       uint64   `json:"member_id"`
	Address        string   `json:"address,omitempty"`
	StatusAddress  string   `json:"status_address,omitempty"`
	PeerURLs       []string `json:"peer_urls,omitempty"`
	EtcdClientURLs []string `json:"etcd_client_urls,omitempty"`
}

func memberView(m *schedulerpb.Member) *memberJSON {
	if m == nil {
		return nil
	}
	return &memberJSON{Name: m.Name, MemberID: m.MemberId, Address: m.Address, StatusAddress: m.StatusAddress,
		PeerURLs: m.PeerUrls, EtcdClientURLs: m.EtcdClientUrls}
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), etcdOpTimeout)
	defer cancel()
	leader, _ := s.leader(ctx)
	writeJSON(w, http.StatusOK, map[string]any{
		"version":    Version,
		"cluster_id": strconv.FormatUint(s.clusterID, 10),
		"member":     memberView(s.self),
		"is_leader":  s.IsLeader(),
		"leader":     memberView(leader),
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), etcdOpTimeout)
	defer cancel()
	resp := map[string]any{"name": s.cfg.Name, "is_leader": s.IsLeader(), "serving": !s.closing.Load()}
	leader, err := s.leader(ctx)
	resp["leader"] = memberView(leader)
	all, etcdLeader, merr := s.members(ctx)
	members := make([]*memberJSON, len(all))
	for i, m := range all {
		members[i] = memberView(m)
	}
	resp["members"], resp["etcd_leader"] = members, memberView(etcdLeader)
	healthy := err == nil && merr == nil && leader != nil && etcdLeader != nil && !s.closing.Load()
	resp["healthy"] = healthy
	code := http.StatusOK
	if !healthy {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, resp)
}

type peerJSON struct {
	ID      uint64 `json:"id"`
	StoreID uint64 `json:"store_id"`
	Role    string `json:"role"`
}

func peerView(p *metapb.Peer) *peerJSON {
	if p == nil {
		return nil
	}
	return &peerJSON{ID: p.Id, StoreID: p.StoreId, Role: p.Role.String()}
}

type regionJSON struct {
	ID              uint64      `json:"id"`
	StartKey        string      `json:"start_key"` // hex
	EndKey          string      `json:"end_key"`   // hex; "" is +infinity
	ConfVer         uint64      `json:"conf_ver"`
	Version         uint64      `json:"version"`
	Peers           []*peerJSON `json:"peers"`
	Leader          *peerJSON   `json:"leader"`
	PendingPeers    []*peerJSON `json:"pending_peers,omitempty"`
	DownPeers       []downJSON  `json:"down_peers,omitempty"`
	ApproximateSize uint64      `json:"approximate_size"`
	ApproximateKeys uint64      `json:"approximate_keys"`
	Term            uint64      `json:"term,omitempty"`
}

type downJSON struct {
	Peer        *peerJSON `json:"peer"`
	DownSeconds uint64    `json:"down_seconds"`
}

func regionView(r *cluster.RegionInfo) *regionJSON {
	v := &regionJSON{
		ID: r.ID(), StartKey: hex.EncodeToString(r.StartKey()), EndKey: hex.EncodeToString(r.EndKey()),
		ConfVer: r.Epoch().GetConfVer(), Version: r.Epoch().GetVersion(), Leader: peerView(r.Leader()),
		ApproximateSize: r.ApproximateSize(), ApproximateKeys: r.ApproximateKeys(), Term: r.Term(),
	}
	for _, p := range r.Peers() {
		v.Peers = append(v.Peers, peerView(p))
	}
	for _, p := range r.PendingPeers() {
		v.PendingPeers = append(v.PendingPeers, peerView(p))
	}
	for _, d := range r.DownPeers() {
		v.DownPeers = append(v.DownPeers, downJSON{Peer: peerView(d.Peer), DownSeconds: d.DownSeconds})
	}
	return v
}

type storeJSON struct {
	ID               uint64                  `json:"id"`
	Address          string                  `json:"address"`
	State            string                  `json:"state"`
	LastHeartbeat    *time.Time              `json:"last_heartbeat,omitempty"`
	Down             bool                    `json:"down"`
	DownTime         string                  `json:"down_time"`
	RegionCount      int                     `json:"region_count"`
	LeaderCount      int                     `json:"leader_count"`
	PendingPeerCount int                     `json:"pending_peer_count"`
	RegionSize       uint64                  `json:"region_size"`
	LeaderSize       uint64                  `json:"leader_size"`
	Stats            *schedulerpb.StoreStats `json:"stats,omitempty"`
}

func storeView(st cluster.StoreStatus) *storeJSON {
	v := &storeJSON{
		ID: st.Store.ID(), Address: st.Store.Address(), State: st.Store.State().String(),
		Down: st.Down, DownTime: st.DownTime.Round(time.Millisecond).String(),
		RegionCount: st.RegionCount, LeaderCount: st.LeaderCount, PendingPeerCount: st.PendingPeerCount,
		RegionSize: st.RegionSize, LeaderSize: st.LeaderSize, Stats: st.Store.Stats(),
	}
	if hb := st.Store.LastHeartbeat(); !hb.IsZero() {
		v.LastHeartbeat = &hb
	}
	return v
}

func (s *Server) handleStores(w http.ResponseWriter, _ *http.Request, c *cluster.Cluster) {
	stores := []*storeJSON{}
	for _, st := range c.StoreStatuses() {
		stores = append(stores, storeView(st))
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": len(stores), "stores": stores})
}

func (s *Server) handleStore(w http.ResponseWriter, r *http.Request, c *cluster.Cluster) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("store id: %w", err))
		return
	}
	for _, st := range c.StoreStatuses() {
		if st.Store.ID() == id {
			writeJSON(w, http.StatusOK, storeView(st))
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("%w: %d", cluster.ErrStoreNotFound, id))
}

func (s *Server) handleRegions(w http.ResponseWriter, r *http.Request, c *cluster.Cluster) {
	q := r.URL.Query()
	start, err := hex.DecodeString(q.Get("start"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("start (hex): %w", err))
		return
	}
	end, err := hex.DecodeString(q.Get("end"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("end (hex): %w", err))
		return
	}
	limit := defaultRegionsLimit
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
			return
		}
	}
	regions := c.ScanRegions(start, end, limit)
	views := make([]*regionJSON, len(regions))
	for i, rg := range regions {
		views[i] = regionView(rg)
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": len(views), "total": c.RegionCount(), "regions": views})
}

func (s *Server) handleRegion(w http.ResponseWriter, r *http.Request, c *cluster.Cluster) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("region id: %w", err))
		return
	}
	if rg := c.GetRegion(id); rg != nil {
		writeJSON(w, http.StatusOK, regionView(rg))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("%w: %d", cluster.ErrRegionNotFound, id))
}

func (s *Server) handleRegionByKey(w http.ResponseWriter, r *http.Request, c *cluster.Cluster) {
	key := []byte(r.PathValue("key"))
	if r.URL.Query().Get("encoding") == "hex" {
		var err error
		if key, err = hex.DecodeString(string(key)); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("key (hex): %w", err))
			return
		}
	}
	if rg := c.GetRegionByKey(key); rg != nil {
		writeJSON(w, http.StatusOK, regionView(rg))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("%w: no region contains key %x", cluster.ErrRegionNotFound, key))
}

func (s *Server) handleOperators(w http.ResponseWriter, _ *http.Request, t *leaderTerm) {
	writeJSON(w, http.StatusOK, map[string]any{"running": t.operators.Running(), "history": t.operators.History()})
}

// handleSchedulers lists the running balance schedulers and those that
// can be added.
func (s *Server) handleSchedulers(w http.ResponseWriter, _ *http.Request, _ *leaderTerm) {
	writeJSON(w, http.StatusOK, map[string]any{"running": s.schedulers.Names(), "available": schedulers.Known()})
}

// handleAddScheduler starts the scheduler named in the body, {"name": ...}.
func (s *Server) handleAddScheduler(w http.ResponseWriter, r *http.Request, t *leaderTerm) {
	var in struct {
		Name string `json:"name"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.schedulers.Add(in.Name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.logger.Info("scheduler added", "scheduler", in.Name)
	s.handleSchedulers(w, r, t)
}

// handleRemoveScheduler stops a scheduler; its running operators finish.
func (s *Server) handleRemoveScheduler(w http.ResponseWriter, r *http.Request, t *leaderTerm) {
	name := r.PathValue("name")
	if err := s.schedulers.Remove(name); err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	s.logger.Info("scheduler removed", "scheduler", name)
	s.handleSchedulers(w, r, t)
}

type configJSON struct {
	MaxReplicas      uint32 `json:"max_replicas"`
	MaxStoreDownTime string `json:"max_store_down_time"`
}

func (s *Server) handleGetConfig(w http.ResponseWriter, _ *http.Request, c *cluster.Cluster) {
	cfg := c.Config()
	writeJSON(w, http.StatusOK, configJSON{
		MaxReplicas:      cfg.MaxReplicas,
		MaxStoreDownTime: (time.Duration(cfg.MaxStoreDownTimeMs) * time.Millisecond).String(),
	})
}

// handlePutConfig changes the fields present in the JSON body.
func (s *Server) handlePutConfig(w http.ResponseWriter, r *http.Request, c *cluster.Cluster) {
	var in struct {
		MaxReplicas      *uint32 `json:"max_replicas"`
		MaxStoreDownTime *string `json:"max_store_down_time"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	cur := c.Config()
	cfg := &schedulerpb.ClusterConfig{MaxReplicas: cur.MaxReplicas, MaxStoreDownTimeMs: cur.MaxStoreDownTimeMs}
	if in.MaxReplicas != nil {
		cfg.MaxReplicas = *in.MaxReplicas
	}
	if in.MaxStoreDownTime != nil {
		d, err := time.ParseDuration(*in.MaxStoreDownTime)
		if err != nil || d < time.Millisecond {
			writeError(w, http.StatusBadRequest, fmt.Errorf("max_store_down_time %q: want a duration >= 1ms", *in.MaxStoreDownTime))
			return
		}
		cfg.MaxStoreDownTimeMs = uint64(d / time.Millisecond)
	}
	if err := c.PutConfig(r.Context(), cfg); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, cluster.ErrInvalidArgument) || errors.Is(err, cluster.ErrNotBootstrapped) {
			code = http.StatusBadRequest
		}
		writeError(w, code, err)
		return
	}
	s.handleGetConfig(w, r, c)
}

func uintString(v uint64) string { return strconv.FormatUint(v, 10) }
