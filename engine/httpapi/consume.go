package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// reader reads one partition of a topic through an in-process subscription, from an offset on,
// record by record. Its owner is the goroutine serving the request; Close it there.
type reader struct {
	l    *engine.Local
	part int32
	// next is the offset of the next record to yield: a delivery's first batch may start before it.
	next int64
	it   wire.RecordIter
}

// startOf reads where a read starts from the query: offset=N (CodeOffsetOutOfRange outside the
// retained range, except the end itself), time=MS (the first record at or after it), or
// from=earliest|latest (the default earliest). lastEventID, if not empty, is an SSE resumption:
// the offset after it.
func startOf(q url.Values, lastEventID string) (wire.StartAt, int64, error) {
	if lastEventID != "" {
		off, err := strconv.ParseInt(lastEventID, 10, 64)
		if err != nil || off < -1 {
			return 0, 0, badRequest("Last-Event-ID: want an offset")
		}
		return wire.StartOffset, off + 1, nil
	}
	if s := q.Get("offset"); s != "" {
		off, err := strconv.ParseInt(s, 10, 64)
		if err != nil || off < 0 {
			return 0, 0, badRequest("offset: want a non-negative integer")
		}
		return wire.StartOffset, off, nil
	}
	if s := q.Get("time"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			return 0, 0, badRequest("time: want milliseconds since the epoch")
		}
		return wire.StartTimestamp, ms, nil
	}
	switch q.Get("from") {
	case "", "earliest":
		return wire.StartEarliest, 0, nil
	case "latest":
		return wire.StartLatest, 0, nil
	}
	return 0, 0, badRequest("from: want earliest or latest")
}

// openReader checks consume rights on topic and subscribes to its partition named by the path.
func (h *Handler) openReader(r *http.Request, principal string) (*reader, error) {
	topic := r.PathValue("topic")
	if !auth.MayTopic(h.acl(), principal, auth.ActConsume, topic) {
		return nil, denied("consume topic " + topic)
	}
	p, err := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	if err != nil || p < 0 {
		return nil, badRequest("partition: want a non-negative integer")
	}
	start, value, err := startOf(r.URL.Query(), r.Header.Get("Last-Event-ID"))
	if err != nil {
		return nil, err
	}
	l, err := h.e.SubscribeLocal(wire.Subscribe{Topic: topic, Partition: int32(p), Start: start, StartValue: value, Reset: wire.ResetError})
	if err != nil {
		return nil, err
	}
	rd := &reader{l: l, part: int32(p), next: l.Position(int32(p))}
	rd.it.SetMaxInflated(h.e.Options().MaxBatchBytes)
	return rd, nil
}

// read waits (until ctx ends) for the next delivery and calls fn for each of its records at or
// after next, in order, until fn returns false. The record's bytes are valid only during fn.
func (rd *reader) read(ctx context.Context, fn func(rec *wire.Record) bool) error {
	d, err := rd.l.Next(ctx)
	if err != nil {
		return err
	}
	var rec wire.Record
	for rest := d.Batches(); len(rest) > 0; {
		n, err := wire.BatchSize(rest)
		if err != nil {
			return err
		}
		if _, err := rd.it.Reset(rest[:n]); err != nil {
			return err
		}
		for rd.it.Next(&rec) {
			if rec.Offset < rd.next {
				continue
			}
			if !fn(&rec) {
				return nil
			}
			rd.next = rec.Offset + 1
		}
		if err := rd.it.Err(); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// ConsumeResponse answers a consume: the records (in offset order), the offset to ask for next, and
// the partition's end when the answer was made.
type ConsumeResponse struct {
	Records    []Record `json:"records"`
	NextOffset int64    `json:"next_offset"`
	EndOffset  int64    `json:"end_offset"`
}

// pollParams reads a polling request's max (default def, at most MaxRecords) and wait_ms.
func (h *Handler) pollParams(r *http.Request, def int) (limit int, wait time.Duration, err error) {
	if limit, err = maxOf(r.URL.Query(), def, h.opts.MaxRecords); err != nil {
		return 0, 0, err
	}
	wait, err = h.waitFor(r)
	return limit, wait, err
}

// maxOf reads the max query parameter: at most limit records, default def.
func maxOf(q url.Values, def, limit int) (int, error) {
	s := q.Get("max")
	if s == "" {
		return min(def, limit), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, badRequest("max: want a positive integer")
	}
	return min(n, limit), nil
}

// consume serves GET /v1/topics/{topic}/partitions/{partition}/records: up to max records (default
// 100) from the start the query names. With wait_ms, an answer that would be empty waits up to that
// long for the first record (a long poll): a produce wakes it at once. Once it has a record it takes
// what else is already there, within max and MaxResponseBytes, and answers.
func (h *Handler) consume(w http.ResponseWriter, r *http.Request, principal string) {
	limit, wait, err := h.pollParams(r, 100)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	if !h.acquireWait(w) {
		return
	}
	defer h.releaseWait()
	rd, err := h.openReader(r, principal)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	defer rd.l.Close()
	topic := r.PathValue("topic")
	resp := ConsumeResponse{Records: []Record{}}
	bytes := 0
	full := false
	collect := func(rec *wire.Record) bool {
		if len(resp.Records) >= limit || (len(resp.Records) > 0 && bytes >= h.opts.MaxResponseBytes) {
			full = true
			return false
		}
		out, n := recordJSON(rd.part, rec)
		resp.Records = append(resp.Records, out)
		bytes += n
		return true
	}
	ctx, cancel := h.waitContext(r, wait)
	err = rd.read(ctx, collect)
	cancel()
	// Then what is already there, without waiting for more (a done context makes Next a try).
	for err == nil && !full {
		err = rd.read(doneCtx, collect)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		if r.Context().Err() != nil {
			return // the client went away
		}
		writeError(w, err, 0)
		return
	}
	resp.NextOffset = rd.next
	if t := h.e.TopicByName(topic); t != nil && t.Partition(rd.part) != nil {
		resp.EndOffset = t.Partition(rd.part).NextOffset()
	}
	writeJSON(w, http.StatusOK, resp)
}

// waitContext is the request's context, ended also after d or at Close.
func (h *Handler) waitContext(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), d)
	stop := context.AfterFunc(h.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// stream serves GET /v1/topics/{topic}/partitions/{partition}/stream: the partition's records as
// Server-Sent Events, from the start the query names (or after the Last-Event-ID a reconnecting
// EventSource sends), until the client goes away. Each event is
//
//	id: <offset>
//	data: <the record as JSON, one line>
//
// so an EventSource resumes where it stopped. A comment line is sent every 15 s while idle, to keep
// proxies from closing the connection.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, principal string) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, errors.New("httpapi: streaming unsupported by the connection"), http.StatusInternalServerError)
		return
	}
	if !h.acquireWait(w) {
		return
	}
	defer h.releaseWait()
	rd, err := h.openReader(r, principal)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	defer rd.l.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	buf := make([]byte, 0, 64<<10)
	var werr error
	emit := func(rec *wire.Record) bool {
		out, _ := recordJSON(rd.part, rec)
		buf = append(buf, "id: "...)
		buf = strconv.AppendInt(buf, rec.Offset, 10)
		buf = append(buf, "\ndata: "...)
		js, _ := json.Marshal(out) // one line: JSON strings escape newlines
		buf = append(buf, js...)
		buf = append(buf, "\n\n"...)
		if len(buf) >= 32<<10 {
			_, werr = w.Write(buf)
			buf = buf[:0]
		}
		return werr == nil
	}
	for {
		ctx, cancel := h.waitContext(r, 15*time.Second)
		err := rd.read(ctx, emit)
		cancel()
		switch {
		case werr != nil || r.Context().Err() != nil || h.ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
			buf = append(buf, ":\n\n"...) // keep-alive
		case err != nil:
			buf = append(buf, "event: error\ndata: "...)
			js, _ := json.Marshal(errorOf(err))
			buf = append(buf, js...)
			buf = append(buf, "\n\n"...)
			_, _ = w.Write(buf)
			fl.Flush()
			return
		}
		if len(buf) > 0 {
			if _, werr = w.Write(buf); werr != nil {
				return
			}
			buf = buf[:0]
		}
		fl.Flush()
	}
}
