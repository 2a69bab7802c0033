package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Request/reply headers, as the Go client's (client.HeaderReplyTo, client.HeaderCorrelationID): a
// responder written with the client answers an HTTP request as any other.
const (
	headerReplyTo       = "sluice-reply-to"
	headerCorrelationID = "sluice-correlation-id"
)

// RequestBody is the body of POST /v1/topics/{topic}/request: one record, sent with a reply inbox;
// the answer is the first reply that carries its correlation id, waited for up to TimeoutMs (default
// 5 s, at most the handler's MaxWait).
type RequestBody struct {
	Record    Record `json:"record"`
	Partition *int32 `json:"partition,omitempty"`
	TimeoutMs int64  `json:"timeout_ms,omitempty"`
}

// RequestResponse answers a request: where the request was stored, and the reply.
type RequestResponse struct {
	Request ProduceResponse `json:"request"`
	Reply   Record          `json:"reply"`
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// request serves POST /v1/topics/{topic}/request. Each request has its own reply inbox (a
// memory-only topic of one partition named after the principal, wire.InboxName), deleted when the
// request is answered or times out (CodeTimeout, 504).
func (h *Handler) request(w http.ResponseWriter, r *http.Request, principal string) {
	topic := r.PathValue("topic")
	if err := h.mayProduce(principal, topic); err != nil {
		writeError(w, err, 0)
		return
	}
	var req RequestBody
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err, 0)
		return
	}
	timeout := 5 * time.Second
	if req.TimeoutMs > 0 {
		timeout = time.Duration(req.TimeoutMs) * time.Millisecond
	}
	timeout = min(timeout, h.opts.MaxWait)
	if !h.acquireWait(w) {
		return
	}
	defer h.releaseWait()
	inbox := wire.InboxName(principal, randomHex(8))
	if _, err := h.e.CreateTopic(wire.TopicConfig{Name: inbox, Partitions: 1, Flags: wire.TopicMemory}); err != nil {
		writeError(w, err, 0)
		return
	}
	defer func() {
		if err := h.e.DeleteTopic(inbox); err != nil {
			h.opts.Logger.Warn("http request: deleting the reply inbox", "inbox", inbox, "err", err)
		}
	}()
	rd, err := h.openInbox(inbox)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	defer rd.l.Close()
	corr := randomHex(8)
	// The routing headers are this request's own: any the record carries are replaced.
	hs := req.Record.Headers[:0:0]
	for _, hd := range req.Record.Headers {
		if hd.Key != headerReplyTo && hd.Key != headerCorrelationID {
			hs = append(hs, hd)
		}
	}
	req.Record.Headers = hs
	part := int32(-1)
	if req.Partition != nil {
		part = *req.Partition
	}
	extra := []HeaderJSON{{Key: headerReplyTo, Value: &inbox}, {Key: headerCorrelationID, Value: &corr}}
	if req.Record.Encoding == encBase64 { // header values are spelled in the record's encoding
		ib, cb := b64(inbox), b64(corr)
		extra = []HeaderJSON{{Key: headerReplyTo, Value: &ib}, {Key: headerCorrelationID, Value: &cb}}
	}
	sent, err := h.publish(r, topic, part, []Record{req.Record}, max(wire.DurabilityWritten, h.opts.MinDurability), extra)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	ctx, cancel := h.waitContext(r, timeout)
	defer cancel()
	for {
		var reply *Record
		err := rd.read(ctx, func(rec *wire.Record) bool {
			var got []byte
			rec.Headers(func(k, v []byte) bool { // the last one is the sender's own
				if string(k) == headerCorrelationID {
					got = v
				}
				return true
			})
			if string(got) == corr {
				out, _ := recordJSON(0, rec)
				reply = &out
				return false
			}
			return true
		})
		switch {
		case reply != nil:
			writeJSON(w, http.StatusOK, RequestResponse{Request: sent, Reply: *reply})
			return
		case errors.Is(err, context.DeadlineExceeded):
			writeError(w, &wire.ProtocolError{Code: wire.CodeTimeout, Message: "no reply within " + timeout.String()}, 0)
			return
		case err != nil:
			if r.Context().Err() == nil {
				writeError(w, err, 0)
			}
			return
		}
	}
}

// openInbox reads an inbox from its start.
func (h *Handler) openInbox(inbox string) (*reader, error) {
	l, err := h.e.SubscribeLocal(wire.Subscribe{Topic: inbox, Partition: 0, Start: wire.StartEarliest})
	if err != nil {
		return nil, err
	}
	rd := &reader{l: l, part: 0}
	rd.it.SetMaxInflated(h.e.Options().MaxBatchBytes)
	return rd, nil
}
