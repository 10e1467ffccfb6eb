package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/cluster"
	"github.com/regionkv/regionkv/scheduler/storage"
)

// Errors of the service layer (the cluster's are in package cluster).
var (
	errClusterIDMismatch = errors.New("cluster id mismatch")
	errNotLeader         = errors.New("not the scheduler leader")
)

// notLeaderError names the leader, when known.
type notLeaderError struct{ leader *schedulerpb.Member }

func (e *notLeaderError) Error() string {
	if e.leader == nil {
		return "not the scheduler leader; no leader is elected"
	}
	return fmt.Sprintf("not the scheduler leader; the leader is %s at %s", e.leader.Name, e.leader.Address)
}

func (e *notLeaderError) Unwrap() error { return errNotLeader }

// errorType maps an error to its schedulerpb.ErrorType. It is the one place
// where errors become wire error types.
func errorType(err error) schedulerpb.ErrorType {
	var stale *cluster.StaleRegionError
	switch {
	case err == nil:
		return schedulerpb.ErrorType_OK
	case errors.Is(err, errClusterIDMismatch):
		return schedulerpb.ErrorType_CLUSTER_ID_MISMATCH
	case errors.Is(err, errNotLeader), errors.Is(err, storage.ErrNotLeader):
		return schedulerpb.ErrorType_NOT_LEADER
	case errors.Is(err, cluster.ErrNotBootstrapped):
		return schedulerpb.ErrorType_NOT_BOOTSTRAPPED
	case errors.Is(err, cluster.ErrAlreadyBootstrapped):
		return schedulerpb.ErrorType_ALREADY_BOOTSTRAPPED
	case errors.Is(err, cluster.ErrStoreNotFound):
		return schedulerpb.ErrorType_STORE_NOT_FOUND
	case errors.Is(err, cluster.ErrStoreTombstone):
		return schedulerpb.ErrorType_STORE_TOMBSTONE
	case errors.Is(err, cluster.ErrRegionNotFound):
		return schedulerpb.ErrorType_REGION_NOT_FOUND
	case errors.Is(err, cluster.ErrInvalidArgument):
		return schedulerpb.ErrorType_INVALID_ARGUMENT
	case errors.As(err, &stale):
		return schedulerpb.ErrorType_STALE_REGION
	}
	return schedulerpb.ErrorType_UNKNOWN
}

// header returns a response header for err (nil: success).
func (s *Server) header(err error) *schedulerpb.ResponseHeader {
	h := &schedulerpb.ResponseHeader{ClusterId: s.clusterID}
	if err != nil {
		h.Error = &schedulerpb.Error{Type: errorType(err), Message: err.Error()}
		var nl *notLeaderError
		if errors.As(err, &nl) {
			h.Error.Leader = nl.leader
		}
	}
	return h
}

// serving returns the current leader term for a request with header h, or
// the error to answer with: wrong cluster id, or not the leader.
func (s *Server) serving(ctx context.Context, h *schedulerpb.RequestHeader) (*leaderTerm, error) {
	if id := h.GetClusterId(); id != s.clusterID {
		return nil, fmt.Errorf("%w: request for cluster %d, this is cluster %d", errClusterIDMismatch, id, s.clusterID)
	}
	if t := s.term.Load(); t != nil && !s.closing.Load() {
		return t, nil
	}
	ctx, cancel := context.WithTimeout(ctx, etcdOpTimeout)
	defer cancel()
	leader, _ := s.leader(ctx)
	if leader.GetName() == s.self.Name {
		leader = nil // our own key, but our term ended (or we are closing)
	}
	return nil, &notLeaderError{leader: leader}
}

// service implements schedulerpb.SchedulerServer for a Server.
type service struct {
	schedulerpb.UnimplementedSchedulerServer
	s *Server
}

var _ schedulerpb.SchedulerServer = (*service)(nil)

func (v *service) GetMembers(ctx context.Context, _ *schedulerpb.GetMembersRequest) (*schedulerpb.GetMembersResponse, error) {
	s := v.s
	ctx, cancel := context.WithTimeout(ctx, etcdOpTimeout)
	defer cancel()
	all, etcdLeader, err := s.members(ctx)
	if err != nil {
		return &schedulerpb.GetMembersResponse{Header: s.header(err)}, nil
	}
	leader, err := s.leader(ctx)
	if err != nil {
		return &schedulerpb.GetMembersResponse{Header: s.header(err)}, nil
	}
	return &schedulerpb.GetMembersResponse{Header: s.header(nil), Members: all, Leader: leader, EtcdLeader: etcdLeader}, nil
}

func (v *service) Bootstrap(ctx context.Context, req *schedulerpb.BootstrapRequest) (*schedulerpb.BootstrapResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err == nil {
		err = t.cluster.Bootstrap(ctx, req.Store, req.Region)
	}
	return &schedulerpb.BootstrapResponse{Header: v.s.header(err)}, nil
}

func (v *service) IsBootstrapped(ctx context.Context, req *schedulerpb.IsBootstrappedRequest) (*schedulerpb.IsBootstrappedResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.IsBootstrappedResponse{Header: v.s.header(err)}, nil
	}
	return &schedulerpb.IsBootstrappedResponse{Header: v.s.header(nil), Bootstrapped: t.cluster.IsBootstrapped()}, nil
}

func (v *service) AllocID(ctx context.Context, req *schedulerpb.AllocIDRequest) (*schedulerpb.AllocIDResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	var id uint64
	if err == nil {
		id, err = t.cluster.AllocID(ctx)
	}
	return &schedulerpb.AllocIDResponse{Header: v.s.header(err), Id: id}, nil
}

func (v *service) PutStore(ctx context.Context, req *schedulerpb.PutStoreRequest) (*schedulerpb.PutStoreResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err == nil {
		err = t.cluster.PutStore(ctx, req.Store)
	}
	return &schedulerpb.PutStoreResponse{Header: v.s.header(err)}, nil
}

func (v *service) GetStore(ctx context.Context, req *schedulerpb.GetStoreRequest) (*schedulerpb.GetStoreResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.GetStoreResponse{Header: v.s.header(err)}, nil
	}
	st, err := t.cluster.GetStore(req.StoreId)
	resp := &schedulerpb.GetStoreResponse{Header: v.s.header(err)}
	if st != nil { // a tombstone store comes with STORE_TOMBSTONE
		resp.Store, resp.Stats = st.Meta(), st.Stats()
	}
	return resp, nil
}

func (v *service) GetAllStores(ctx context.Context, req *schedulerpb.GetAllStoresRequest) (*schedulerpb.GetAllStoresResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.GetAllStoresResponse{Header: v.s.header(err)}, nil
	}
	resp := &schedulerpb.GetAllStoresResponse{Header: v.s.header(nil)}
	for _, st := range t.cluster.GetStores() {
		if req.ExcludeTombstoneStores && st.IsTombstone() {
			continue
		}
		resp.Stores = append(resp.Stores, st.Meta())
	}
	return resp, nil
}

func (v *service) StoreHeartbeat(ctx context.Context, req *schedulerpb.StoreHeartbeatRequest) (*schedulerpb.StoreHeartbeatResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err == nil {
		err = t.cluster.HandleStoreHeartbeat(req.Stats)
	}
	storeHeartbeats.WithLabelValues(errorType(err).String()).Inc()
	return &schedulerpb.StoreHeartbeatResponse{Header: v.s.header(err)}, nil
}

// RegionHeartbeat serves one store's heartbeat stream. Heartbeats are
// handled in arrival order; a response is sent only for a rejected
// heartbeat (header error, region_id set) or with an operator step. The
// stream ends when the member stops leading or shuts down, so that the
// store reconnects to the new leader.
func (v *service) RegionHeartbeat(stream schedulerpb.Scheduler_RegionHeartbeatServer) error {
	s := v.s
	ctx := stream.Context()
	reqs := make(chan *schedulerpb.RegionHeartbeatRequest)
	recvErr := make(chan error, 1)
	// The receiver ends when Recv fails, which it does at the latest when
	// this handler returns and gRPC cancels the stream.
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	var term *leaderTerm
	var termDone <-chan struct{}
	for {
		var req *schedulerpb.RegionHeartbeatRequest
		select {
		case req = <-reqs:
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-termDone:
			return status.Error(codes.Unavailable, "scheduler leader stepped down")
		case <-s.ctx.Done():
			return status.Error(codes.Unavailable, "scheduler is shutting down")
		}
		t, err := s.serving(ctx, req.Header)
		if err != nil {
			regionHeartbeats.WithLabelValues(errorType(err).String()).Inc()
			if serr := stream.Send(&schedulerpb.RegionHeartbeatResponse{Header: s.header(err), RegionId: req.Region.GetId()}); serr != nil {
				return serr
			}
			if errors.Is(err, errNotLeader) {
				return status.Error(codes.Unavailable, err.Error())
			}
			continue
		}
		if term == nil {
			term, termDone = t, t.ctx.Done()
		} else if t != term {
			return status.Error(codes.Unavailable, "scheduler leadership changed")
		}
		region := cluster.RegionFromHeartbeat(req)
		err = t.cluster.HandleRegionHeartbeat(ctx, region)
		regionHeartbeats.WithLabelValues(errorType(err).String()).Inc()
		if err != nil {
			if errorType(err) == schedulerpb.ErrorType_UNKNOWN {
				s.logger.Warn("region heartbeat failed", "region_id", req.Region.GetId(), "err", err)
			} else {
				s.logger.Debug("region heartbeat rejected", "region_id", req.Region.GetId(), "err", err)
			}
			if err := stream.Send(&schedulerpb.RegionHeartbeatResponse{Header: s.header(err), RegionId: req.Region.GetId()}); err != nil {
				return err
			}
			continue
		}
		if resp := t.dispatch(ctx, region); resp != nil {
			resp.Header = s.header(nil)
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

// regionResponse builds a GetRegionResponse for r (nil: REGION_NOT_FOUND).
func (s *Server) regionResponse(r *cluster.RegionInfo, notFound string) *schedulerpb.GetRegionResponse {
	if r == nil {
		return &schedulerpb.GetRegionResponse{Header: s.header(fmt.Errorf("%w: %s", cluster.ErrRegionNotFound, notFound))}
	}
	return &schedulerpb.GetRegionResponse{
		Header:       s.header(nil),
		Region:       r.Meta(),
		Leader:       r.Leader(),
		DownPeers:    r.DownPeers(),
		PendingPeers: r.PendingPeers(),
	}
}

func (v *service) GetRegion(ctx context.Context, req *schedulerpb.GetRegionRequest) (*schedulerpb.GetRegionResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.GetRegionResponse{Header: v.s.header(err)}, nil
	}
	return v.s.regionResponse(t.cluster.GetRegionByKey(req.RegionKey), fmt.Sprintf("no region contains key %x", req.RegionKey)), nil
}

func (v *service) GetPrevRegion(ctx context.Context, req *schedulerpb.GetRegionRequest) (*schedulerpb.GetRegionResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.GetRegionResponse{Header: v.s.header(err)}, nil
	}
	return v.s.regionResponse(t.cluster.GetPrevRegionByKey(req.RegionKey), fmt.Sprintf("no region before key %x", req.RegionKey)), nil
}

func (v *service) GetRegionByID(ctx context.Context, req *schedulerpb.GetRegionByIDRequest) (*schedulerpb.GetRegionResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.GetRegionResponse{Header: v.s.header(err)}, nil
	}
	return v.s.regionResponse(t.cluster.GetRegion(req.RegionId), fmt.Sprintf("no region %d", req.RegionId)), nil
}

func (v *service) ScanRegions(ctx context.Context, req *schedulerpb.ScanRegionsRequest) (*schedulerpb.ScanRegionsResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.ScanRegionsResponse{Header: v.s.header(err)}, nil
	}
	regions := t.cluster.ScanRegions(req.StartKey, req.EndKey, int(req.Limit))
	resp := &schedulerpb.ScanRegionsResponse{Header: v.s.header(nil), Regions: make([]*schedulerpb.RegionInfo, len(regions))}
	for i, r := range regions {
		resp.Regions[i] = r.ToProto()
	}
	return resp, nil
}

func (v *service) AskSplit(ctx context.Context, req *schedulerpb.AskSplitRequest) (*schedulerpb.AskSplitResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.AskSplitResponse{Header: v.s.header(err)}, nil
	}
	ids, err := t.cluster.AskSplit(ctx, req.Region, 1)
	if err != nil {
		return &schedulerpb.AskSplitResponse{Header: v.s.header(err)}, nil
	}
	return &schedulerpb.AskSplitResponse{Header: v.s.header(nil), NewRegionId: ids[0].NewRegionId, NewPeerIds: ids[0].NewPeerIds}, nil
}

func (v *service) AskBatchSplit(ctx context.Context, req *schedulerpb.AskBatchSplitRequest) (*schedulerpb.AskBatchSplitResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.AskBatchSplitResponse{Header: v.s.header(err)}, nil
	}
	ids, err := t.cluster.AskSplit(ctx, req.Region, int(req.SplitCount))
	return &schedulerpb.AskBatchSplitResponse{Header: v.s.header(err), Ids: ids}, nil
}

func (v *service) ReportSplit(ctx context.Context, req *schedulerpb.ReportSplitRequest) (*schedulerpb.ReportSplitResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err == nil {
		err = t.cluster.ReportSplit(ctx, []*metapb.Region{req.Left, req.Right})
	}
	return &schedulerpb.ReportSplitResponse{Header: v.s.header(err)}, nil
}

func (v *service) ReportBatchSplit(ctx context.Context, req *schedulerpb.ReportBatchSplitRequest) (*schedulerpb.ReportBatchSplitResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err == nil {
		err = t.cluster.ReportSplit(ctx, req.Regions)
	}
	return &schedulerpb.ReportBatchSplitResponse{Header: v.s.header(err)}, nil
}

func (v *service) GetClusterConfig(ctx context.Context, req *schedulerpb.GetClusterConfigRequest) (*schedulerpb.GetClusterConfigResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err != nil {
		return &schedulerpb.GetClusterConfigResponse{Header: v.s.header(err)}, nil
	}
	return &schedulerpb.GetClusterConfigResponse{Header: v.s.header(nil), Config: t.cluster.Config()}, nil
}

func (v *service) PutClusterConfig(ctx context.Context, req *schedulerpb.PutClusterConfigRequest) (*schedulerpb.PutClusterConfigResponse, error) {
	t, err := v.s.serving(ctx, req.Header)
	if err == nil {
		err = t.cluster.PutConfig(ctx, req.Config)
	}
	return &schedulerpb.PutClusterConfigResponse{Header: v.s.header(err)}, nil
}
