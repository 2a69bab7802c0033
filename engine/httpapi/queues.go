package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// A work-queue session is a server-side queue member standing in for an HTTP client, which cannot
// hold a subscription open between requests. It is keyed by a random id the open answers with,
// belongs to the principal that opened it (another gets CodeUnknownSubscription), and lives until
// it is deleted or goes SessionTTL without a request; then its unsettled records return to the
// queue after their ack timeout, as a disconnected native member's do.
type session struct {
	id, group, topic, principal string

	// mu serializes the session's requests: whoever holds it is the owner of l (engine.Local's
	// owner goroutine). Held across a receive's wait.
	mu     sync.Mutex
	l      *engine.Local // nil once closed; guarded by mu
	it     wire.RecordIter
	buffer []Record // records taken from the queue and not yet answered; guarded by mu

	lastUse atomic.Int64 // unix nanos of the last request's end (or start); any goroutine
}

// sessionTable holds the open sessions.
type sessionTable struct {
	mu sync.Mutex // guards m
	m  map[string]*session
}

func (st *sessionTable) init() { st.m = map[string]*session{} }

func (st *sessionTable) count() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.m)
}

// take removes and returns the sessions for which drop reports true.
func (st *sessionTable) take(drop func(*session) bool) []*session {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*session
	for id, s := range st.m {
		if drop(s) {
			out = append(out, s)
			delete(st.m, id)
		}
	}
	return out
}

func (st *sessionTable) closeAll() {
	for _, s := range st.take(func(*session) bool { return true }) {
		s.close()
	}
}

// close ends the member; it waits for a request in flight on the session.
func (s *session) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l != nil {
		s.l.Close()
		s.l = nil
	}
}

// reapSessions closes sessions idle for SessionTTL, until Close.
func (h *Handler) reapSessions() {
	defer h.wg.Done()
	tick := time.NewTicker(max(h.opts.SessionTTL/4, 250*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-tick.C:
			idle := now.Add(-h.opts.SessionTTL).UnixNano()
			for _, s := range h.sessions.take(func(s *session) bool { return s.lastUse.Load() < idle && s.mu.TryLock() && s.unlock() }) {
				h.opts.Logger.Debug("http queue session expired", "session", s.id, "group", s.group, "topic", s.topic)
				s.close()
			}
		}
	}
}

// unlock releases mu and returns true: a session found idle with TryLock is not in a request.
func (s *session) unlock() bool { s.mu.Unlock(); return true }

// OpenSession is the body of POST /v1/queues/{group}/sessions. MaxAckPending bounds the records the
// session holds unsettled, those waiting in it for a receive included (default
// DefaultSessionAckPending): their ack timeouts run from their dispatch.
type OpenSession struct {
	Topic         string `json:"topic"`
	AckTimeoutMs  uint32 `json:"ack_timeout_ms,omitempty"`
	MaxDeliveries uint16 `json:"max_deliveries,omitempty"`
	MaxAckPending uint32 `json:"max_ack_pending,omitempty"`
}

// DefaultSessionAckPending is a work-queue session's MaxAckPending when the open names none: a
// session takes records ahead of its receives, and what it holds unanswered must not outlive its ack
// timeout in bulk.
const DefaultSessionAckPending = 100

// SessionJSON answers the open.
type SessionJSON struct {
	Session string `json:"session"`
	Group   string `json:"group"`
	Topic   string `json:"topic"`
	TTLMs   int64  `json:"ttl_ms"`
}

func (h *Handler) openSession(w http.ResponseWriter, r *http.Request, principal string) {
	group := r.PathValue("group")
	var req OpenSession
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err, 0)
		return
	}
	if !auth.MayTopic(h.acl(), principal, auth.ActConsume, req.Topic) {
		writeError(w, denied("consume topic "+req.Topic), 0)
		return
	}
	if !auth.MayGroup(h.acl(), principal, auth.ActConsume, group) {
		writeError(w, denied("consume group "+group), 0)
		return
	}
	if h.sessions.count() >= h.opts.MaxSessions {
		writeError(w, &wire.ProtocolError{Code: wire.CodeThrottled, Message: "too many work-queue sessions"}, 0)
		return
	}
	if req.MaxAckPending == 0 {
		req.MaxAckPending = DefaultSessionAckPending
	}
	l, err := h.e.SubscribeLocal(wire.Subscribe{Topic: req.Topic, Partition: -1, Group: group, Mode: wire.ModeQueue,
		Start: wire.StartCommitted, AckTimeoutMs: req.AckTimeoutMs, MaxDeliveries: req.MaxDeliveries, MaxAckPending: req.MaxAckPending})
	if err != nil {
		writeError(w, err, 0)
		return
	}
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	s := &session{id: hex.EncodeToString(idb[:]), group: group, topic: req.Topic, principal: principal, l: l}
	s.it.SetMaxInflated(h.e.Options().MaxBatchBytes)
	s.lastUse.Store(time.Now().UnixNano())
	h.sessions.mu.Lock()
	if len(h.sessions.m) >= h.opts.MaxSessions { // raced with another open
		h.sessions.mu.Unlock()
		l.Close()
		writeError(w, &wire.ProtocolError{Code: wire.CodeThrottled, Message: "too many work-queue sessions"}, 0)
		return
	}
	h.sessions.m[s.id] = s
	h.sessions.mu.Unlock()
	writeJSON(w, http.StatusCreated, SessionJSON{Session: s.id, Group: group, Topic: req.Topic, TTLMs: h.opts.SessionTTL.Milliseconds()})
}

// lookup finds the principal's session named by the path, locks it and marks it used. The caller
// unlocks s.mu. A session of another principal, of another group, or closed is unknown.
func (h *Handler) lookup(r *http.Request, principal string) (*session, error) {
	h.sessions.mu.Lock()
	s := h.sessions.m[r.PathValue("session")]
	h.sessions.mu.Unlock()
	if s == nil || s.principal != principal || s.group != r.PathValue("group") {
		return nil, &wire.ProtocolError{Code: wire.CodeUnknownSubscription, Message: "no such session (expired?)"}
	}
	s.lastUse.Store(time.Now().UnixNano())
	s.mu.Lock()
	if s.l == nil {
		s.mu.Unlock()
		return nil, &wire.ProtocolError{Code: wire.CodeUnknownSubscription, Message: "session closed"}
	}
	return s, nil
}

func (h *Handler) closeSession(w http.ResponseWriter, r *http.Request, principal string) {
	s, err := h.lookup(r, principal)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	s.mu.Unlock()
	h.sessions.take(func(x *session) bool { return x == s })
	s.close()
	w.WriteHeader(http.StatusNoContent)
}

// fill takes one delivery (waiting until ctx ends) into the session's buffer.
func (s *session) fill(ctx context.Context) error {
	d, err := s.l.Next(ctx)
	if err != nil {
		return err
	}
	var rec wire.Record
	for rest := d.Batches(); len(rest) > 0; {
		n, err := wire.BatchSize(rest)
		if err != nil {
			return err
		}
		if _, err := s.it.Reset(rest[:n]); err != nil {
			return err
		}
		for s.it.Next(&rec) {
			out, _ := recordJSON(d.Partition.ID(), &rec)
			s.buffer = append(s.buffer, out)
		}
		if err := s.it.Err(); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// ReceiveResponse answers a receive: records to ack or nack by partition and offset.
type ReceiveResponse struct {
	Records []Record `json:"records"`
}

// receive serves POST .../sessions/{session}/receive?max=N&wait_ms=W: up to max records (default
// 10), waiting up to wait_ms for the first. Records taken beyond max wait in the session for the
// next receive; their ack timeout runs from their dispatch.
func (h *Handler) receive(w http.ResponseWriter, r *http.Request, principal string) {
	limit, wait, err := h.pollParams(r, 10)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	if !h.acquireWait(w) {
		return
	}
	defer h.releaseWait()
	s, err := h.lookup(r, principal)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	defer s.mu.Unlock()
	defer s.lastUse.Store(time.Now().UnixNano())
	if len(s.buffer) == 0 {
		ctx, cancel := h.waitContext(r, wait)
		err = s.fill(ctx)
		cancel()
	}
	// Then what the queue has at once (a done context makes Next a try).
	for err == nil && len(s.buffer) < limit {
		err = s.fill(doneCtx)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		writeError(w, err, 0)
		return
	}
	resp := ReceiveResponse{Records: []Record{}}
	bytes := 0
	for len(s.buffer) > 0 && len(resp.Records) < limit && (len(resp.Records) == 0 || bytes < h.opts.MaxResponseBytes) {
		rec := s.buffer[0]
		s.buffer = s.buffer[1:]
		resp.Records = append(resp.Records, rec)
		bytes += recordSize(&rec)
	}
	writeJSON(w, http.StatusOK, resp)
}

// doneCtx is an ended context: engine.Local.Next with it returns what is ready without waiting.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func recordSize(r *Record) int {
	n := 0
	if r.Key != nil {
		n += len(*r.Key)
	}
	if r.Value != nil {
		n += len(*r.Value)
	}
	for _, hd := range r.Headers {
		n += len(hd.Key)
		if hd.Value != nil {
			n += len(*hd.Value)
		}
	}
	return n
}

// SettleRequest is the body of ack and nack: the records, by partition and offset. DelayMs (nack
// only) delays the redelivery.
type SettleRequest struct {
	Records []struct {
		Partition int32 `json:"partition"`
		Offset    int64 `json:"offset"`
	} `json:"records"`
	DelayMs int64 `json:"delay_ms,omitempty"`
}

func (h *Handler) ack(w http.ResponseWriter, r *http.Request, principal string) {
	h.settle(w, r, principal, false)
}

func (h *Handler) nack(w http.ResponseWriter, r *http.Request, principal string) {
	h.settle(w, r, principal, true)
}

// settle acks or nacks records the session holds; records it does not hold (settled already, or
// expired and redelivered elsewhere) are ignored, as the native protocol's are. An ack is answered
// once it is durable.
func (h *Handler) settle(w http.ResponseWriter, r *http.Request, principal string, nack bool) {
	var req SettleRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err, 0)
		return
	}
	if len(req.Records) > h.opts.MaxRecords {
		writeError(w, badRequest("too many records"), 0)
		return
	}
	s, err := h.lookup(r, principal)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	defer s.mu.Unlock()
	byPart := map[int32][]int64{}
	for _, rec := range req.Records {
		byPart[rec.Partition] = append(byPart[rec.Partition], rec.Offset)
	}
	for p, offs := range byPart {
		if nack {
			err = s.l.Nack(p, time.Duration(max(req.DelayMs, 0))*time.Millisecond, offs...)
		} else {
			err = s.l.Ack(p, offs...)
		}
		if err != nil {
			writeError(w, err, 0)
			return
		}
	}
	if !nack && len(req.Records) > 0 {
		// As the native protocol's Ack: answered once the acks are on disk, so an acked record is
		// never delivered again, whatever happens to the broker.
		done := make(chan error, 1)
		s.l.SyncSettlements(func(err error) { done <- err })
		select {
		case err = <-done:
		case <-r.Context().Done():
			return
		}
		if err != nil {
			writeError(w, err, 0)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// QueuePartition is one partition of a work queue in GET /v1/queues.
type QueuePartition struct {
	Partition int32 `json:"partition"`
	Ready     int64 `json:"ready"`
	Pending   int64 `json:"pending"`
	Floor     int64 `json:"floor"`
	End       int64 `json:"end"`
}

// QueueJSON is one work queue in GET /v1/queues.
type QueueJSON struct {
	Group        string           `json:"group"`
	Topic        string           `json:"topic"`
	Members      int              `json:"members"`
	Ready        int64            `json:"ready"`
	Pending      int64            `json:"pending"`
	DeadLettered int64            `json:"dead_lettered"`
	Partitions   []QueuePartition `json:"partitions"`
}

// listQueues serves GET /v1/queues: the work queues joined since the broker started whose group
// and topic the principal may consume.
func (h *Handler) listQueues(w http.ResponseWriter, _ *http.Request, principal string) {
	out := []QueueJSON{}
	for _, q := range h.e.Queues() {
		if !auth.MayGroup(h.acl(), principal, auth.ActConsume, q.Group) || !auth.MayTopic(h.acl(), principal, auth.ActConsume, q.Topic) {
			continue
		}
		j := QueueJSON{Group: q.Group, Topic: q.Topic, Members: q.Members, DeadLettered: q.DeadLettered, Partitions: []QueuePartition{}}
		for _, p := range q.Partitions {
			j.Ready += p.Ready
			j.Pending += p.Pending
			j.Partitions = append(j.Partitions, QueuePartition{Partition: p.Partition, Ready: p.Ready, Pending: p.Pending, Floor: p.Floor, End: p.End})
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, map[string][]QueueJSON{"queues": out})
}
