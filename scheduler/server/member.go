package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/checker"
	"github.com/regionkv/regionkv/scheduler/cluster"
	"github.com/regionkv/regionkv/scheduler/idalloc"
	"github.com/regionkv/regionkv/scheduler/operator"
	"github.com/regionkv/regionkv/scheduler/storage"
)

const (
	// loadTimeout bounds loading the cluster state on election.
	loadTimeout = 30 * time.Second
	// campaignRetryDelay is the pause after a failed campaign.
	campaignRetryDelay = 500 * time.Millisecond
	// etcdOpTimeout bounds small etcd reads and writes outside requests.
	etcdOpTimeout = 5 * time.Second
)

// leaderTerm is one continuous period of leadership. Its cluster state is
// used only while it lasts; ctx is done when it ends.
type leaderTerm struct {
	cluster *cluster.Cluster
	ctx     context.Context
	logger  *slog.Logger
	// operators run on regions; the checkers create them as regions report.
	operators *operator.Controller
	replicas  *checker.ReplicaChecker
}

// dispatch returns the operator step to send back to the leader of region,
// which just reported, or nil. A region without a running operator is
// checked first, and gets an operator if it needs one. (The balance
// schedulers add operators from their own loop, runSchedulers.)
func (t *leaderTerm) dispatch(ctx context.Context, region *cluster.RegionInfo) *schedulerpb.RegionHeartbeatResponse {
	if resp := t.operators.Dispatch(region); resp != nil {
		return resp
	}
	if t.operators.Has(region.ID()) {
		return nil
	}
	op, err := t.replicas.Check(ctx, region)
	if err != nil {
		t.logger.Warn("replica check failed", "region_id", region.ID(), "err", err)
		return nil
	}
	if op == nil || !t.operators.Add(op) {
		return nil
	}
	operatorsCreated.WithLabelValues(op.Kind).Inc()
	t.logger.Info("operator created", "region_id", region.ID(), "operator", op.String())
	return t.operators.Dispatch(region)
}

func (s *Server) leaderPrefix() string { return storage.ClusterPath(s.clusterID) + "/leader" }
func (s *Server) memberKey(name string) string {
	return storage.ClusterPath(s.clusterID) + "/members/" + name
}

// campaignLoop campaigns for leadership, leads while it can, and starts
// over, until the server stops.
func (s *Server) campaignLoop() {
	s.publishSelf()
	s.dropOwnStaleLeaderKey()
	for s.ctx.Err() == nil {
		if err := s.campaignOnce(); err != nil && s.ctx.Err() == nil {
			s.logger.Warn("leader campaign failed", "err", err)
			select {
			case <-s.ctx.Done():
			case <-time.After(campaignRetryDelay):
			}
		}
	}
}

// publishSelf records this member's addresses in etcd for GetMembers.
func (s *Server) publishSelf() {
	val, err := s.self.Marshal()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, etcdOpTimeout)
	defer cancel()
	if _, err := s.client.Put(ctx, s.memberKey(s.self.Name), string(val)); err != nil {
		s.logger.Warn("cannot publish member info", "err", err)
	}
}

// dropOwnStaleLeaderKey deletes a leader key this member left behind when
// it crashed, so a restarted member does not wait for the old lease to
// expire before it can lead again.
func (s *Server) dropOwnStaleLeaderKey() {
	ctx, cancel := context.WithTimeout(s.ctx, etcdOpTimeout)
	defer cancel()
	resp, err := s.client.Get(ctx, s.leaderPrefix()+"/", clientv3.WithPrefix())
	if err != nil {
		return
	}
	for _, kv := range resp.Kvs {
		m := new(schedulerpb.Member)
		if m.Unmarshal(kv.Value) != nil || m.Name != s.self.Name || m.MemberId != s.self.MemberId {
			continue
		}
		if _, err := s.client.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err != nil {
			s.logger.Warn("cannot drop the leader key of a previous run", "err", err)
		} else {
			s.logger.Info("dropped the leader key of a previous run")
		}
	}
}

// campaignOnce waits to win the election, leads until the lease is lost or
// the server stops, and resigns.
func (s *Server) campaignOnce() error {
	// The session outlives s.ctx so that closing it can still revoke the
	// lease (and so delete the leader key at once) during shutdown.
	session, err := concurrency.NewSession(s.client, concurrency.WithTTL(int(s.cfg.LeaderLease.Seconds())),
		concurrency.WithContext(context.Background()))
	if err != nil {
		return fmt.Errorf("new etcd session: %w", err)
	}
	defer session.Close()
	val, err := s.self.Marshal()
	if err != nil {
		return err
	}
	election := concurrency.NewElection(session, s.leaderPrefix())
	if err := election.Campaign(s.ctx, string(val)); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}

	// Every metadata write of this term is conditional on our election key
	// still being the one we created: a deposed leader cannot write.
	guard := clientv3.Compare(clientv3.CreateRevision(election.Key()), "=", election.Rev())
	c := cluster.New(cluster.Options{
		ClusterID: s.clusterID,
		Storage:   storage.NewEtcd(s.client, s.clusterID, guard),
		IDs:       idalloc.New(storage.NewEtcd(s.client, s.clusterID, guard), s.cfg.IDBatch),
		Logger:    s.logger,
	})
	ctx, cancel := context.WithTimeout(s.ctx, loadTimeout)
	err = c.Load(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("load cluster state: %w", err)
	}
	termCtx, endTerm := context.WithCancel(s.ctx)
	defer endTerm()
	term := &leaderTerm{cluster: c, ctx: termCtx, logger: s.logger,
		operators: operator.NewController(nil), replicas: checker.NewReplicaChecker(c, nil)}
	s.term.Store(term)
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		s.runSchedulers(term)
	}()
	defer func() {
		endTerm()
		<-schedDone
	}()
	leaderGauge.WithLabelValues(s.cfg.Name).Set(1)
	s.logger.Info("became scheduler leader", "cluster_id", s.clusterID, "bootstrapped", c.IsBootstrapped())

	select {
	case <-session.Done():
		s.logger.Warn("leader lease lost, stepping down")
	case <-s.ctx.Done():
	}
	s.term.Store(nil)
	leaderGauge.WithLabelValues(s.cfg.Name).Set(0)
	endTerm()
	s.logger.Info("no longer scheduler leader")
	return nil
}

// runSchedulers runs the balance schedulers every ScheduleInterval while
// the term lasts.
func (s *Server) runSchedulers(t *leaderTerm) {
	tick := time.NewTicker(s.cfg.ScheduleInterval.Duration)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		if !t.cluster.IsBootstrapped() {
			continue
		}
		added, err := s.schedulers.RunOnce(t.ctx, t.cluster, t.operators)
		if err != nil && t.ctx.Err() == nil {
			s.logger.Warn("balance schedulers failed", "err", err)
		}
		for name, n := range added {
			operatorsCreated.WithLabelValues(name).Add(float64(n))
			s.logger.Info("balance operators created", "scheduler", name, "count", n)
		}
	}
}

// leader returns the current leader, or nil if none is elected.
func (s *Server) leader(ctx context.Context) (*schedulerpb.Member, error) {
	if s.term.Load() != nil {
		return s.self, nil
	}
	if s.client == nil {
		return nil, nil
	}
	resp, err := s.client.Get(ctx, s.leaderPrefix()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	m := new(schedulerpb.Member)
	if err := m.Unmarshal(resp.Kvs[0].Value); err != nil {
		return nil, fmt.Errorf("%w: leader key: %v", storage.ErrCorrupt, err)
	}
	return m, nil
}

// members returns every member of the embedded etcd cluster, with the
// addresses each published, and the etcd leader.
func (s *Server) members(ctx context.Context) (all []*schedulerpb.Member, etcdLeader *schedulerpb.Member, err error) {
	list, err := s.client.MemberList(ctx)
	if err != nil {
		return nil, nil, err
	}
	published := make(map[string]*schedulerpb.Member)
	if resp, err := s.client.Get(ctx, storage.ClusterPath(s.clusterID)+"/members/", clientv3.WithPrefix()); err == nil {
		for _, kv := range resp.Kvs {
			m := new(schedulerpb.Member)
			if m.Unmarshal(kv.Value) == nil {
				published[m.Name] = m
			}
		}
	}
	leaderID := uint64(s.etcd.Server.Leader())
	for _, em := range list.Members {
		m := &schedulerpb.Member{Name: em.Name, MemberId: em.ID, PeerUrls: em.PeerURLs, EtcdClientUrls: em.ClientURLs}
		if p := published[em.Name]; p != nil {
			m.Address, m.StatusAddress = p.Address, p.StatusAddress
		}
		all = append(all, m)
		if em.ID == leaderID {
			etcdLeader = m
		}
	}
	return all, etcdLeader, nil
}
