package server

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/scheduler/checker"
	"github.com/regionkv/regionkv/scheduler/cluster"
	"github.com/regionkv/regionkv/scheduler/operator"
	"github.com/regionkv/regionkv/scheduler/schedulers"
)

// Operators made by hand through the status API (regionkv-ctl operator add):
//
//	POST   /api/v1/operators              {"type": ..., "region_id": N, ...}
//	DELETE /api/v1/operators/{region_id}  cancel the region's running operator
//
// Types and their fields:
//
//	transfer-leader  store_id: the store whose voter should lead
//	add-peer         store_id: the store to add a voter on (learner, then promoted)
//	remove-peer      store_id: the store whose peer goes (leadership moves first)
//	split-region     key: hex, strictly inside the region; none: split in the middle
//
// The answer is the operator (201), or {"error": ...} with 400 for a bad
// request, 404 for an unknown region, 409 when the region already has a
// running operator. Like every operator, it is carried out one step per
// region heartbeat of the region's leader.

// Kind of the operators made through the API.
const adminOperatorKind = "admin"

// SplitRegionTimeout bounds a split operator.
const SplitRegionTimeout = time.Minute

// operatorRequest is the body of POST /api/v1/operators.
type operatorRequest struct {
	Type     string `json:"type"`
	RegionID uint64 `json:"region_id"`
	StoreID  uint64 `json:"store_id,omitempty"`
	Key      string `json:"key,omitempty"` // hex
}

// httpError is an error with the HTTP status to answer it with.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, err: fmt.Errorf(format, args...)}
}

func (s *Server) handleAddOperator(w http.ResponseWriter, r *http.Request, t *leaderTerm) {
	var in operatorRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, errors.New("trailing data after the JSON object"))
		return
	}
	op, err := s.buildOperator(r, t, &in)
	if err == nil && !t.operators.Add(op) {
		err = &httpError{code: http.StatusConflict, err: fmt.Errorf("region %d already has a running operator", in.RegionID)}
	}
	if err != nil {
		code := http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			code = he.code
		}
		writeError(w, code, err)
		return
	}
	s.logger.Info("operator added through the API", "region_id", op.RegionID, "operator", op.String())
	for _, v := range t.operators.Running() {
		if v.RegionID == op.RegionID {
			writeJSON(w, http.StatusCreated, v)
			return
		}
	}
	// Already dispatched and ended (a region heartbeat came in between).
	writeJSON(w, http.StatusCreated, map[string]any{"region_id": op.RegionID, "desc": op.Desc})
}

// buildOperator validates a request against the region and stores as the
// leader knows them and returns the operator it asks for.
func (s *Server) buildOperator(r *http.Request, t *leaderTerm, in *operatorRequest) (*operator.Operator, error) {
	c := t.cluster
	if in.RegionID == 0 {
		return nil, badRequest("region_id is required")
	}
	region := c.GetRegion(in.RegionID)
	if region == nil {
		return nil, &httpError{code: http.StatusNotFound, err: fmt.Errorf("%w: %d", cluster.ErrRegionNotFound, in.RegionID)}
	}
	needStore := func() (*cluster.StoreInfo, error) {
		if in.StoreID == 0 {
			return nil, badRequest("%s needs store_id", in.Type)
		}
		st, err := c.GetStore(in.StoreID)
		if err != nil {
			return nil, badRequest("store %d: %v", in.StoreID, err)
		}
		return st, nil
	}
	leader := region.Leader()
	now := time.Now()
	newOp := func(desc string, timeout time.Duration, steps ...operator.Step) *operator.Operator {
		op := operator.New(desc, region, timeout, now, steps...)
		op.Kind = adminOperatorKind
		return op
	}
	switch in.Type {
	case "transfer-leader":
		if _, err := needStore(); err != nil {
			return nil, err
		}
		p := region.StorePeer(in.StoreID)
		if p == nil || p.Role != metapb.PeerRole_Voter {
			return nil, badRequest("region %d has no voter on store %d", in.RegionID, in.StoreID)
		}
		if leader == nil {
			return nil, badRequest("region %d has no known leader yet", in.RegionID)
		}
		if leader.StoreId == in.StoreID {
			return nil, badRequest("store %d already leads region %d", in.StoreID, in.RegionID)
		}
		return newOp(fmt.Sprintf("admin: transfer leader to store %d", in.StoreID), schedulers.TransferLeaderTimeout,
			operator.TransferLeader{FromStore: leader.StoreId, ToStore: in.StoreID}), nil

	case "add-peer":
		st, err := needStore()
		if err != nil {
			return nil, err
		}
		if st.State() != metapb.StoreState_Up {
			return nil, badRequest("store %d is %s", in.StoreID, st.State())
		}
		if region.StorePeer(in.StoreID) != nil {
			return nil, badRequest("region %d already has a peer on store %d", in.RegionID, in.StoreID)
		}
		id, err := c.AllocID(r.Context())
		if err != nil {
			return nil, err
		}
		return newOp(fmt.Sprintf("admin: add peer on store %d", in.StoreID), checker.AddPeerTimeout,
			operator.AddLearner{ToStore: in.StoreID, PeerID: id},
			operator.PromoteLearner{ToStore: in.StoreID, PeerID: id}), nil

	case "remove-peer":
		if in.StoreID == 0 {
			return nil, badRequest("remove-peer needs store_id")
		}
		p := region.StorePeer(in.StoreID)
		if p == nil {
			return nil, badRequest("region %d has no peer on store %d", in.RegionID, in.StoreID)
		}
		var steps []operator.Step
		if leader.GetStoreId() == in.StoreID {
			to := uint64(0)
			for _, v := range region.Peers() {
				if v.StoreId != in.StoreID && v.Role == metapb.PeerRole_Voter {
					to = v.StoreId
					break
				}
			}
			if to == 0 {
				return nil, badRequest("region %d has no other voter to lead it", in.RegionID)
			}
			steps = append(steps, operator.TransferLeader{FromStore: in.StoreID, ToStore: to})
		}
		steps = append(steps, operator.RemovePeer{FromStore: in.StoreID, PeerID: p.Id})
		return newOp(fmt.Sprintf("admin: remove peer on store %d", in.StoreID), checker.RemovePeerTimeout, steps...), nil

	case "split-region":
		key, err := hex.DecodeString(in.Key)
		if err != nil {
			return nil, badRequest("key (hex): %v", err)
		}
		if len(key) > 0 && (bytes.Compare(key, region.StartKey()) <= 0 ||
			(len(region.EndKey()) > 0 && bytes.Compare(key, region.EndKey()) >= 0)) {
			return nil, badRequest("key %x is not strictly inside region %d [%x, %x)", key, in.RegionID, region.StartKey(), region.EndKey())
		}
		if leader == nil {
			return nil, badRequest("region %d has no known leader yet", in.RegionID)
		}
		step := operator.SplitRegion{Key: key, Version: region.Epoch().GetVersion()}
		return newOp("admin: "+step.String(), SplitRegionTimeout, step), nil

	case "":
		return nil, badRequest("type is required (transfer-leader, add-peer, remove-peer, split-region)")
	}
	return nil, badRequest("unknown operator type %q (want transfer-leader, add-peer, remove-peer, split-region)", in.Type)
}

func (s *Server) handleCancelOperator(w http.ResponseWriter, r *http.Request, t *leaderTerm) {
	id, err := strconv.ParseUint(r.PathValue("region_id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("region id: %w", err))
		return
	}
	if !t.operators.Has(id) {
		writeError(w, http.StatusNotFound, fmt.Errorf("region %d has no running operator", id))
		return
	}
	t.operators.Cancel(id)
	s.logger.Info("operator cancelled through the API", "region_id", id)
	writeJSON(w, http.StatusOK, map[string]any{"cancelled": id})
}
