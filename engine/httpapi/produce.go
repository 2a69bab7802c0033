package httpapi

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// ProduceRequest is the JSON body of a produce: the records, all to one partition (Partition, or -1
// for the broker's round-robin choice), in one record batch.
type ProduceRequest struct {
	Records   []Record `json:"records"`
	Partition *int32   `json:"partition,omitempty"`
	// Durability is "none", "written" (the default) or "fsync"; the broker's floor raises it.
	Durability string `json:"durability,omitempty"`
}

// ProduceResponse answers a produce: where its records were stored, and the durability met.
type ProduceResponse struct {
	Partition  int32  `json:"partition"`
	BaseOffset int64  `json:"base_offset"`
	LastOffset int64  `json:"last_offset"`
	Durability string `json:"durability"`
}

// parseDurability reads a durability name ("" is written) and applies the broker's floor.
func (h *Handler) parseDurability(s string) (wire.Durability, error) {
	d := wire.DurabilityWritten
	if s != "" {
		var err error
		if d, err = wire.ParseDurability(s); err != nil {
			return 0, badRequest("durability: want none, written or fsync")
		}
	}
	return max(d, h.opts.MinDurability), nil
}

// mayProduce checks the rights a produce to topic needs: produce on it, and when it does not exist
// on an auto-creating broker, the right to create it (as engine/server's produce).
func (h *Handler) mayProduce(principal, topic string) error {
	if !auth.MayTopic(h.acl(), principal, auth.ActProduce, topic) {
		return denied("produce topic " + topic)
	}
	if h.e.TopicByName(topic) == nil && h.e.Options().AutoCreateTopics &&
		!auth.MayCreate(h.acl(), principal, wire.TopicConfig{Name: topic}) {
		return denied("admin topic " + topic)
	}
	return nil
}

// produce serves POST /v1/topics/{topic}/records. A JSON body (Content-Type application/json) is a
// ProduceRequest; any other body is the value of one record, with its key in the query parameter
// key, headers in repeated header=name:value parameters, and partition and durability as query
// parameters too.
func (h *Handler) produce(w http.ResponseWriter, r *http.Request, principal string) {
	start := time.Now()
	topic := r.PathValue("topic")
	if err := h.mayProduce(principal, topic); err != nil {
		writeError(w, err, 0)
		return
	}
	var req ProduceRequest
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/json" {
		if err := decodeJSON(r, &req); err != nil {
			writeError(w, err, 0)
			return
		}
	} else {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeError(w, err, 0)
			return
		}
		q := r.URL.Query()
		rec := Record{Value: new(string(body))}
		if q.Has("key") {
			rec.Key = new(q.Get("key"))
		}
		for _, hv := range q["header"] {
			k, v, ok := strings.Cut(hv, ":")
			if !ok {
				writeError(w, badRequest("header: want name:value"), 0)
				return
			}
			rec.Headers = append(rec.Headers, HeaderJSON{Key: k, Value: new(v)})
		}
		req.Records = []Record{rec}
		req.Durability = q.Get("durability")
		if s := q.Get("partition"); s != "" {
			p, err := strconv.ParseInt(s, 10, 32)
			if err != nil {
				writeError(w, badRequest("partition: want an integer"), 0)
				return
			}
			req.Partition = new(int32(p))
		}
	}
	switch {
	case len(req.Records) == 0:
		writeError(w, badRequest("no records"), 0)
		return
	case len(req.Records) > h.opts.MaxRecords:
		writeError(w, &wire.ProtocolError{Code: wire.CodeBatchTooLarge, Message: "more than " + strconv.Itoa(h.opts.MaxRecords) + " records"}, 0)
		return
	}
	d, err := h.parseDurability(req.Durability)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	part := int32(-1)
	if req.Partition != nil {
		part = *req.Partition
	}
	res, err := h.publish(r, topic, part, req.Records, d, nil)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	h.produceNs.Add(uint64(time.Since(start)))
	h.produceN.Add(1)
	status := http.StatusOK
	if d == wire.DurabilityNone {
		status = http.StatusAccepted
	}
	writeJSON(w, status, res)
}

// publish builds the records into one batch (extra headers appended to each) and appends it with
// durability d. DurabilityNone is answered, like written, once the batch is in the log: HTTP has no
// request without an answer.
func (h *Handler) publish(r *http.Request, topic string, part int32, recs []Record, d wire.Durability, extra []HeaderJSON) (ProduceResponse, error) {
	bb := wire.NewBatchBuilder(4096)
	now := nowMs()
	for i := range recs {
		if extra != nil {
			recs[i].Headers = append(recs[i].Headers, extra...)
		}
		if err := recs[i].appendTo(bb, now); err != nil {
			return ProduceResponse{}, err
		}
	}
	if bb.Size() > h.e.Options().MaxBatchBytes {
		return ProduceResponse{}, &wire.ProtocolError{Code: wire.CodeBatchTooLarge, Message: "records over the broker's batch limit of " +
			strconv.Itoa(h.e.Options().MaxBatchBytes) + " bytes: send fewer at a time"}
	}
	batch, err := bb.Build()
	if err != nil {
		return ProduceResponse{}, err
	}
	pd := d
	if pd == wire.DurabilityNone {
		pd = wire.DurabilityWritten
	}
	if part < 0 { // the round-robin choice, made here so the answer can name the partition
		t, err := h.e.AutoCreate(topic)
		if err != nil {
			return ProduceResponse{}, err
		}
		p, err := t.PickPartition(-1)
		if err != nil {
			return ProduceResponse{}, err
		}
		part = p.ID()
	}
	base, last, err := h.e.Publish(r.Context(), topic, part, batch, pd)
	if err != nil {
		return ProduceResponse{}, err
	}
	return ProduceResponse{Partition: part, BaseOffset: base, LastOffset: last, Durability: d.String()}, nil
}
