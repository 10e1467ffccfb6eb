package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The JSON shapes of the scheduler's status API (scheduler/server).

type peerJSON struct {
	ID      uint64 `json:"id"`
	StoreID uint64 `json:"store_id"`
	Role    string `json:"role"`
}

type regionJSON struct {
	ID              uint64     `json:"id"`
	StartKey        string     `json:"start_key"`
	EndKey          string     `json:"end_key"`
	ConfVer         uint64     `json:"conf_ver"`
	Version         uint64     `json:"version"`
	Peers           []peerJSON `json:"peers"`
	Leader          *peerJSON  `json:"leader"`
	PendingPeers    []peerJSON `json:"pending_peers"`
	ApproximateSize uint64     `json:"approximate_size"`
	ApproximateKeys uint64     `json:"approximate_keys"`
	DownPeers       []any      `json:"down_peers"`
	Term            uint64     `json:"term"`
}

type storeJSON struct {
	ID            uint64     `json:"id"`
	Address       string     `json:"address"`
	State         string     `json:"state"`
	LastHeartbeat *time.Time `json:"last_heartbeat"`
	Down          bool       `json:"down"`
	DownTime      string     `json:"down_time"`
	RegionCount   int        `json:"region_count"`
	LeaderCount   int        `json:"leader_count"`
	RegionSize    uint64     `json:"region_size"`
}

type operatorJSON struct {
	RegionID    uint64    `json:"region_id"`
	Desc        string    `json:"desc"`
	Kind        string    `json:"kind"`
	Steps       []string  `json:"steps"`
	CurrentStep int       `json:"current_step"`
	Status      string    `json:"status"`
	Created     time.Time `json:"created"`
	Ended       time.Time `json:"ended"`
}

func parseID(what, s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("%s %q is not a positive integer", what, s)
	}
	return id, nil
}

// getJSON fetches path into out, and prints it as JSON with -w json.
// It reports whether the caller should print a table.
func (a *app) getJSON(path string, out any) (table bool, err error) {
	var raw json.RawMessage
	if err := a.api("GET", path, nil, &raw); err != nil {
		return false, err
	}
	if a.json() {
		return false, a.printJSON(raw)
	}
	return true, json.Unmarshal(raw, out)
}

func age(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return time.Since(*t).Round(100*time.Millisecond).String() + " ago"
}

func (a *app) storeCommand() *cobra.Command {
	list := &cobra.Command{
		Use: "list", Short: "List the stores", Args: nArgs(0, 0),
		RunE: func(*cobra.Command, []string) error {
			var out struct {
				Stores []storeJSON `json:"stores"`
			}
			if table, err := a.getJSON("/api/v1/stores", &out); !table || err != nil {
				return err
			}
			var rows [][]string
			for _, s := range out.Stores {
				state := s.State
				if s.Down {
					state += " (down " + s.DownTime + ")"
				}
				rows = append(rows, []string{fmt.Sprint(s.ID), s.Address, state, fmt.Sprint(s.RegionCount), fmt.Sprint(s.LeaderCount), age(s.LastHeartbeat)})
			}
			return a.table([]string{"ID", "ADDRESS", "STATE", "REGIONS", "LEADERS", "LAST HEARTBEAT"}, rows)
		},
	}
	show := &cobra.Command{
		Use: "show <store-id>", Short: "Show one store", Args: nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			id, err := parseID("store id", args[0])
			if err != nil {
				return err
			}
			var s storeJSON
			if table, err := a.getJSON(fmt.Sprintf("/api/v1/store/%d", id), &s); !table || err != nil {
				return err
			}
			return a.fields("id", fmt.Sprint(s.ID), "address", s.Address, "state", s.State, "down", fmt.Sprint(s.Down),
				"regions", fmt.Sprint(s.RegionCount), "leaders", fmt.Sprint(s.LeaderCount),
				"region size", fmt.Sprint(s.RegionSize), "last heartbeat", age(s.LastHeartbeat))
		},
	}
	return group("store", "Stores: list, show", list, show)
}

// hexKey renders a hex key from the API in the chosen encoding.
func (a *app) hexKey(h string, inf string) string {
	if h == "" {
		return inf
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return h
	}
	return a.enc.encode(b)
}

func peersString(r regionJSON) string {
	var parts []string
	for _, p := range r.Peers {
		s := fmt.Sprintf("%d@%d", p.ID, p.StoreID)
		if p.Role == "Learner" {
			s += "(learner)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

func leaderString(r regionJSON) string {
	if r.Leader == nil {
		return "?"
	}
	return fmt.Sprintf("%d@%d", r.Leader.ID, r.Leader.StoreID)
}

func (a *app) printRegion(r regionJSON) error {
	return a.fields("id", fmt.Sprint(r.ID), "start key", a.hexKey(r.StartKey, "(start)"), "end key", a.hexKey(r.EndKey, "(end)"),
		"epoch", fmt.Sprintf("conf_ver %d, version %d", r.ConfVer, r.Version),
		"peers (id@store)", peersString(r), "leader", leaderString(r), "term", fmt.Sprint(r.Term),
		"approximate size", fmt.Sprint(r.ApproximateSize), "approximate keys", fmt.Sprint(r.ApproximateKeys),
		"pending peers", fmt.Sprint(len(r.PendingPeers)), "down peers", fmt.Sprint(len(r.DownPeers)))
}

func (a *app) regionCommand() *cobra.Command {
	var start, end string
	var limit int
	list := &cobra.Command{
		Use: "list", Short: "List regions (--start, --end, --limit)", Args: nArgs(0, 0),
		RunE: func(*cobra.Command, []string) error {
			q := url.Values{}
			for name, v := range map[string]string{"start": start, "end": end} {
				b, err := a.enc.decode(name, v)
				if err != nil {
					return err
				}
				q.Set(name, hex.EncodeToString(b))
			}
			q.Set("limit", fmt.Sprint(limit))
			var out struct {
				Total   int          `json:"total"`
				Regions []regionJSON `json:"regions"`
			}
			if table, err := a.getJSON("/api/v1/regions?"+q.Encode(), &out); !table || err != nil {
				return err
			}
			var rows [][]string
			for _, r := range out.Regions {
				rows = append(rows, []string{fmt.Sprint(r.ID), a.hexKey(r.StartKey, "(start)"), a.hexKey(r.EndKey, "(end)"),
					fmt.Sprint(r.Version), fmt.Sprint(r.ConfVer), leaderString(r), peersString(r), fmt.Sprint(r.ApproximateSize)})
			}
			return a.table([]string{"ID", "START", "END", "VERSION", "CONF_VER", "LEADER", "PEERS (id@store)", "SIZE"}, rows)
		},
	}
	list.Flags().StringVar(&start, "start", "", "first key (default: the start)")
	list.Flags().StringVar(&end, "end", "", "end key, exclusive (default: the end)")
	list.Flags().IntVar(&limit, "limit", 1000, "the most regions to list")
	show := &cobra.Command{
		Use: "show <region-id>", Short: "Show one region", Args: nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			id, err := parseID("region id", args[0])
			if err != nil {
				return err
			}
			var r regionJSON
			if table, err := a.getJSON(fmt.Sprintf("/api/v1/region/%d", id), &r); !table || err != nil {
				return err
			}
			return a.printRegion(r)
		},
	}
	key := &cobra.Command{
		Use: "key <key>", Short: "Show the region that holds a key", Args: nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			k, err := a.enc.decode("key", args[0])
			if err != nil {
				return err
			}
			var r regionJSON
			if table, err := a.getJSON("/api/v1/region/key/"+hex.EncodeToString(k)+"?encoding=hex", &r); !table || err != nil {
				return err
			}
			return a.printRegion(r)
		},
	}
	return group("region", "Regions: list, show, key", list, show, key)
}

func (a *app) operatorCommand() *cobra.Command {
	var all bool
	list := &cobra.Command{
		Use: "list", Short: "List running operators (--all: also recently ended ones)", Args: nArgs(0, 0),
		RunE: func(*cobra.Command, []string) error {
			var out struct {
				Running []operatorJSON `json:"running"`
				History []operatorJSON `json:"history"`
			}
			if table, err := a.getJSON("/api/v1/operators", &out); !table || err != nil {
				return err
			}
			var rows [][]string
			add := func(ops []operatorJSON) {
				for _, o := range ops {
					step := fmt.Sprintf("%d/%d", min(o.CurrentStep+1, len(o.Steps)), len(o.Steps))
					rows = append(rows, []string{fmt.Sprint(o.RegionID), o.Status, step, o.Desc, strings.Join(o.Steps, "; "), o.Created.Local().Format(time.TimeOnly)})
				}
			}
			add(out.Running)
			if all {
				add(out.History)
			}
			return a.table([]string{"REGION", "STATUS", "STEP", "DESC", "STEPS", "CREATED"}, rows)
		},
	}
	list.Flags().BoolVar(&all, "all", false, "also list recently ended operators")

	var wait bool
	addOp := func(use, short, typ string, lo, hi int) *cobra.Command {
		c := &cobra.Command{
			Use: use, Short: short, Args: nArgs(lo, hi),
			RunE: func(_ *cobra.Command, args []string) error {
				region, err := parseID("region id", args[0])
				if err != nil {
					return err
				}
				body := map[string]any{"type": typ, "region_id": region}
				if typ == "split-region" {
					if len(args) == 2 {
						k, err := a.enc.decode("split key", args[1])
						if err != nil {
							return err
						}
						body["key"] = hex.EncodeToString(k)
					}
				} else {
					store, err := parseID("store id", args[1])
					if err != nil {
						return err
					}
					body["store_id"] = store
				}
				var op operatorJSON
				if err := a.api("POST", "/api/v1/operators", body, &op); err != nil {
					return err
				}
				if wait {
					if op, err = a.waitOperator(region, op.Created); err != nil {
						return err
					}
				}
				if a.json() {
					return a.printJSON(op)
				}
				_, err = fmt.Fprintf(a.stdout, "operator on region %d: %s (%s)\n", region, op.Desc, op.Status)
				return err
			},
		}
		c.Flags().BoolVar(&wait, "wait", false, "wait until the operator ends (within --timeout); fail unless it finished")
		return c
	}
	add := group("add", "Add an operator: transfer-leader, add-peer, remove-peer, split-region",
		addOp("transfer-leader <region-id> <to-store-id>", "Move a region's leadership to its voter on a store", "transfer-leader", 2, 2),
		addOp("add-peer <region-id> <store-id>", "Add a voter of a region on a store", "add-peer", 2, 2),
		addOp("remove-peer <region-id> <store-id>", "Remove a region's peer from a store", "remove-peer", 2, 2),
		addOp("split-region <region-id> [key]", "Split a region at a key, or in the middle", "split-region", 1, 2),
	)
	remove := &cobra.Command{
		Use: "remove <region-id>", Short: "Cancel the operator running on a region", Args: nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			region, err := parseID("region id", args[0])
			if err != nil {
				return err
			}
			if err := a.api("DELETE", fmt.Sprintf("/api/v1/operators/%d", region), nil, nil); err != nil {
				return err
			}
			return a.ok()
		},
	}
	return group("operator", "Operators: list, add, remove", list, add, remove)
}

// waitOperator polls until the region's operator created at created has
// ended, and fails unless it finished.
func (a *app) waitOperator(region uint64, created time.Time) (operatorJSON, error) {
	for {
		var out struct {
			Running []operatorJSON `json:"running"`
			History []operatorJSON `json:"history"`
		}
		if err := a.api("GET", "/api/v1/operators", nil, &out); err != nil {
			return operatorJSON{}, err
		}
		for i := len(out.History) - 1; i >= 0; i-- {
			o := out.History[i]
			if o.RegionID == region && (created.IsZero() || o.Created.Equal(created)) {
				if o.Status != "finished" {
					return o, fmt.Errorf("operator on region %d ended %s: %s", region, o.Status, o.Desc)
				}
				return o, nil
			}
		}
		select {
		case <-a.ctx.Done():
			return operatorJSON{}, fmt.Errorf("operator on region %d still running after %v (see: regionkv-ctl operator list)", region, a.timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *app) schedulerCommand() *cobra.Command {
	list := &cobra.Command{
		Use: "list", Short: "List the running and the available balance schedulers", Args: nArgs(0, 0),
		RunE: func(*cobra.Command, []string) error { return a.printSchedulers("GET", "/api/v1/schedulers", nil) },
	}
	add := &cobra.Command{
		Use: "add <name>", Short: "Start a balance scheduler", Args: nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.printSchedulers("POST", "/api/v1/schedulers", map[string]string{"name": args[0]})
		},
	}
	remove := &cobra.Command{
		Use: "remove <name>", Short: "Stop a balance scheduler", Args: nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.printSchedulers("DELETE", "/api/v1/schedulers/"+url.PathEscape(args[0]), nil)
		},
	}
	return group("scheduler", "Balance schedulers: list, add, remove", list, add, remove)
}

func (a *app) printSchedulers(method, path string, body any) error {
	var raw json.RawMessage
	if err := a.api(method, path, body, &raw); err != nil {
		return err
	}
	if a.json() {
		return a.printJSON(raw)
	}
	var out struct {
		Running   []string `json:"running"`
		Available []string `json:"available"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	running := map[string]bool{}
	for _, n := range out.Running {
		running[n] = true
	}
	var rows [][]string
	for _, n := range out.Available {
		st := "stopped"
		if running[n] {
			st = "running"
		}
		rows = append(rows, []string{n, st})
	}
	return a.table([]string{"NAME", "STATUS"}, rows)
}

// configKeys maps config set's keys to the API's JSON fields.
var configKeys = map[string]string{"max-replicas": "max_replicas", "max-store-down-time": "max_store_down_time"}

func (a *app) configCommand() *cobra.Command {
	show := &cobra.Command{
		Use: "show", Short: "Show the cluster configuration", Args: nArgs(0, 0),
		RunE: func(*cobra.Command, []string) error { return a.printConfig("GET", nil) },
	}
	set := &cobra.Command{
		Use: "set <key> <value>", Short: "Change the cluster configuration: max-replicas <n>, max-store-down-time <duration>", Args: nArgs(2, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			field, ok := configKeys[args[0]]
			if !ok {
				return usagef("unknown config key %q (want max-replicas or max-store-down-time)", args[0])
			}
			var v any = args[1]
			if field == "max_replicas" {
				n, err := strconv.ParseUint(args[1], 10, 32)
				if err != nil || n == 0 {
					return usagef("max-replicas %q is not a positive integer", args[1])
				}
				v = n
			}
			return a.printConfig("PUT", map[string]any{field: v})
		},
	}
	return group("config", "Cluster configuration: show, set", show, set)
}

func (a *app) printConfig(method string, body any) error {
	var raw json.RawMessage
	if err := a.api(method, "/api/v1/config", body, &raw); err != nil {
		return err
	}
	if a.json() {
		return a.printJSON(raw)
	}
	var cfg struct {
		MaxReplicas      uint32 `json:"max_replicas"`
		MaxStoreDownTime string `json:"max_store_down_time"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	return a.fields("max-replicas", fmt.Sprint(cfg.MaxReplicas), "max-store-down-time", cfg.MaxStoreDownTime)
}

// component is one line of the health report.
type component struct {
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
	Healthy bool   `json:"healthy"`
	Detail  string `json:"detail,omitempty"`
}

func (a *app) healthCommand() *cobra.Command {
	var wait bool
	c := &cobra.Command{
		Use:   "health",
		Short: "Check the scheduler, every store and the regions' replicas (exit code 1 if unhealthy)",
		Long: `Check the scheduler (its leader and etcd), every store (gRPC health of the Kv
service) and the regions (each has a leader and max-replicas voters, none
pending or down). Exit code 1 if anything is unhealthy. With --wait, poll
until everything is healthy or --timeout passes: scripts use it to wait for
a new cluster to be ready.`,
		Args: nArgs(0, 0),
		RunE: func(*cobra.Command, []string) error {
			for {
				comps, healthy := a.health()
				if healthy || !wait || a.ctx.Err() != nil {
					if err := a.printHealth(comps, healthy); err != nil {
						return err
					}
					if !healthy {
						return fmt.Errorf("the cluster is not healthy")
					}
					return nil
				}
				select {
				case <-a.ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "wait until healthy (within --timeout)")
	return c
}

// health checks every component.
func (a *app) health() ([]component, bool) {
	base, err := a.apiBase()
	if err != nil {
		a.base = "" // ask again next time
		return []component{{Name: "scheduler", Address: a.schedulers, Detail: err.Error()}}, false
	}
	var health struct {
		Healthy bool `json:"healthy"`
		Leader  *struct {
			Name string `json:"name"`
		} `json:"leader"`
	}
	// /api/v1/health answers 503 with its body when unhealthy.
	herr := a.api("GET", "/api/v1/health", nil, &health)
	sc := component{Name: "scheduler", Address: strings.TrimPrefix(base, "http://"), Healthy: herr == nil && health.Healthy}
	if herr != nil {
		sc.Detail = herr.Error()
	} else if health.Leader != nil {
		sc.Detail = "leader " + health.Leader.Name
	}
	comps := []component{sc}
	var stores struct {
		Stores []storeJSON `json:"stores"`
	}
	var cfg struct {
		MaxReplicas int `json:"max_replicas"`
	}
	var regions struct {
		Total   int          `json:"total"`
		Regions []regionJSON `json:"regions"`
	}
	for path, out := range map[string]any{"/api/v1/stores": &stores, "/api/v1/config": &cfg, "/api/v1/regions?limit=100000": &regions} {
		if err := a.api("GET", path, nil, out); err != nil {
			return append(comps, component{Name: "cluster", Detail: err.Error()}), false
		}
	}
	for _, s := range stores.Stores {
		if s.State == "Tombstone" {
			continue
		}
		c := component{Name: fmt.Sprintf("store %d", s.ID), Address: s.Address}
		c.Healthy, c.Detail = a.checkStore(s.Address)
		comps = append(comps, c)
	}
	rc := component{Name: "regions", Healthy: len(regions.Regions) > 0,
		Detail: fmt.Sprintf("%d regions, each with a leader and %d voters", regions.Total, cfg.MaxReplicas)}
	if len(regions.Regions) == 0 {
		rc.Detail = "no region yet (is the cluster bootstrapped?)"
	}
	for _, r := range regions.Regions {
		voters := 0
		for _, p := range r.Peers {
			if p.Role != "Learner" {
				voters++
			}
		}
		var problem string
		switch {
		case r.Leader == nil:
			problem = "has no leader"
		case voters != cfg.MaxReplicas:
			problem = fmt.Sprintf("has %d voters of %d", voters, cfg.MaxReplicas)
		case len(r.PendingPeers) > 0 || len(r.DownPeers) > 0:
			problem = "has pending or down peers"
		}
		if problem != "" {
			rc.Healthy, rc.Detail = false, fmt.Sprintf("region %d %s", r.ID, problem)
			break
		}
	}
	comps = append(comps, rc)
	healthy := true
	for _, c := range comps {
		healthy = healthy && c.Healthy
	}
	return comps, healthy
}

func (a *app) printHealth(comps []component, healthy bool) error {
	if a.json() {
		return a.printJSON(map[string]any{"healthy": healthy, "components": comps})
	}
	var rows [][]string
	for _, c := range comps {
		st := "healthy"
		if !c.Healthy {
			st = "UNHEALTHY"
		}
		rows = append(rows, []string{c.Name, c.Address, st, c.Detail})
	}
	return a.table([]string{"COMPONENT", "ADDRESS", "STATUS", "DETAIL"}, rows)
}

// checkStore asks a store's gRPC health service about the Kv service.
func (a *app) checkStore(addr string) (bool, string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, err.Error()
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(a.ctx, min(a.timeout, 3*time.Second))
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "regionkv.kvpb.Kv"})
	if err != nil {
		return false, err.Error()
	}
	return resp.Status == healthpb.HealthCheckResponse_SERVING, resp.Status.String()
}

func (a *app) memberCommand() *cobra.Command {
	list := &cobra.Command{
		Use: "list", Short: "List the scheduler members", Args: nArgs(0, 0),
		RunE: func(*cobra.Command, []string) error {
			m, err := a.members()
			if err != nil {
				return err
			}
			type memberOut struct {
				Name          string `json:"name"`
				MemberID      string `json:"member_id"`
				Address       string `json:"address"`
				StatusAddress string `json:"status_address"`
				Leader        bool   `json:"leader"`
				EtcdLeader    bool   `json:"etcd_leader"`
			}
			var out []memberOut
			for _, x := range m.Members {
				out = append(out, memberOut{Name: x.Name, MemberID: strconv.FormatUint(x.MemberId, 10), Address: x.Address,
					StatusAddress: x.StatusAddress, Leader: x.Name == m.GetLeader().GetName(), EtcdLeader: x.Name == m.GetEtcdLeader().GetName()})
			}
			if a.json() {
				return a.printJSON(map[string]any{"cluster_id": strconv.FormatUint(m.Header.GetClusterId(), 10), "members": out})
			}
			var rows [][]string
			for _, x := range out {
				rows = append(rows, []string{x.Name, x.MemberID, x.Address, x.StatusAddress, fmt.Sprint(x.Leader)})
			}
			return a.table([]string{"NAME", "MEMBER ID", "ADDRESS", "STATUS ADDRESS", "LEADER"}, rows)
		},
	}
	return group("member", "Scheduler members: list", list)
}
