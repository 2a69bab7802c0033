package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// Rights are what the principal may do to one topic; the console hides what it may not.
type Rights struct {
	Produce bool `json:"produce"`
	Consume bool `json:"consume"`
	Admin   bool `json:"admin"`
}

func (h *Handler) rights(principal, topic string) Rights {
	acl := h.acl()
	return Rights{
		Produce: auth.MayTopic(acl, principal, auth.ActProduce, topic),
		Consume: auth.MayTopic(acl, principal, auth.ActConsume, topic),
		Admin:   auth.MayTopic(acl, principal, auth.ActAdmin, topic),
	}
}

// Whoami answers GET /v1/whoami, which answers without credentials too: Authenticated is then false
// when authentication is on.
type Whoami struct {
	Principal     string `json:"principal"`
	Authenticated bool   `json:"authenticated"`
	AuthEnabled   bool   `json:"auth_enabled"`
	ACLEnabled    bool   `json:"acl_enabled"`
	AutoCreate    bool   `json:"auto_create"`
}

func (h *Handler) whoami(w http.ResponseWriter, r *http.Request, principal string) {
	enabled := h.authn().Enabled()
	authed := !enabled || r.Header.Get("Authorization") != ""
	writeJSON(w, http.StatusOK, Whoami{Principal: principal, Authenticated: authed, AuthEnabled: enabled,
		ACLEnabled: h.acl() != nil, AutoCreate: h.e.Options().AutoCreateTopics})
}

// Stats answers GET /v1/stats: the engine's cumulative counters (its Prometheus metrics, by name
// without the sluice_ prefix), the HTTP face's own, and the native listener's connection counters.
// Rates are the client's to derive from two samples.
type Stats struct {
	TimeMs      int64             `json:"time_ms"`
	Counters    map[string]uint64 `json:"counters"`
	Connections map[string]int64  `json:"connections,omitempty"`
}

// engineCounters reads the engine's unlabelled counters and the sync histogram's sum and count from
// its Prometheus exposition (the engine's one public view of its counters).
func (h *Handler) engineCounters() map[string]uint64 {
	var b bytes.Buffer
	h.e.WriteMetrics(&b)
	out := map[string]uint64{}
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(name, "sluice_")
		if name == "sync_duration_seconds_sum" { // seconds, as a float: kept in microseconds
			if f, err := strconv.ParseFloat(val, 64); err == nil {
				out["sync_duration_us_sum"] = uint64(f * 1e6)
			}
			continue
		}
		if n, err := strconv.ParseUint(val, 10, 64); err == nil {
			out[name] = n
		}
	}
	return out
}

func (h *Handler) stats(w http.ResponseWriter, _ *http.Request, _ string) {
	c := h.engineCounters()
	c["http_produce_requests_total"] = h.produceN.Load()
	c["http_produce_us_sum"] = h.produceNs.Load() / 1000
	c["http_waiting"] = uint64(max(h.waiting.Load(), 0))
	c["http_queue_sessions"] = uint64(h.sessions.count())
	s := Stats{TimeMs: nowMs(), Counters: c}
	if h.opts.Connections != nil {
		s.Connections = h.opts.Connections()
	}
	writeJSON(w, http.StatusOK, s)
}

// TopicSummary is one row of the topic list.
type TopicSummary struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	Memory     bool   `json:"memory"`
	EndOffset  int64  `json:"end_offset"` // the sum of the partitions' end offsets: records ever stored
	Records    int64  `json:"records"`    // the sum of end - start: records retained
	Bytes      int64  `json:"bytes"`
	Rights     Rights `json:"rights"`
}

// TopicList answers GET /v1/topics: one page of the topics the principal may see, sorted by name.
type TopicList struct {
	Topics []TopicSummary `json:"topics"`
	Total  int            `json:"total"` // topics matching, over every page
	Offset int            `json:"offset"`
	Limit  int            `json:"limit"`
}

// maxPage bounds a page of the topic list.
const maxPage = 500

// listTopics serves GET /v1/topics?prefix=&offset=&limit= (limit default 100, at most 500).
func (h *Handler) listTopics(w http.ResponseWriter, r *http.Request, principal string) {
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, maxPage)
	offset = max(offset, 0)
	prefix := q.Get("prefix")
	all := h.e.Topics()
	names := make([]string, 0, len(all))
	for _, cfg := range all {
		if strings.HasPrefix(cfg.Name, prefix) && auth.MayList(h.acl(), principal, cfg.Name) {
			names = append(names, cfg.Name)
		}
	}
	slices.Sort(names)
	out := TopicList{Topics: []TopicSummary{}, Total: len(names), Offset: offset, Limit: limit}
	for _, name := range names[min(offset, len(names)):min(offset+limit, len(names))] {
		t := h.e.TopicByName(name)
		if t == nil {
			continue // deleted since
		}
		info := t.Info()
		s := TopicSummary{Name: name, Partitions: len(info.Partitions), Memory: t.Memory(), Rights: h.rights(principal, name)}
		for _, p := range info.Partitions {
			s.EndOffset += p.EndOffset
			s.Records += p.EndOffset - p.StartOffset
			s.Bytes += p.Bytes
		}
		out.Topics = append(out.Topics, s)
	}
	writeJSON(w, http.StatusOK, out)
}

// TopicConfig is a topic's configuration as JSON (wire.TopicConfig).
type TopicConfig struct {
	Name           string `json:"name"`
	Partitions     uint32 `json:"partitions"`
	RetentionBytes int64  `json:"retention_bytes,omitempty"`
	RetentionMs    int64  `json:"retention_ms,omitempty"`
	SegmentBytes   int64  `json:"segment_bytes,omitempty"`
	Memory         bool   `json:"memory,omitempty"`
}

// PartitionJSON is one partition of a topic description.
type PartitionJSON struct {
	Partition   int32 `json:"partition"`
	StartOffset int64 `json:"start_offset"`
	EndOffset   int64 `json:"end_offset"`
	Bytes       int64 `json:"bytes"`
}

// TopicDescription answers GET /v1/topics/{topic}.
type TopicDescription struct {
	Config     TopicConfig     `json:"config"`
	Partitions []PartitionJSON `json:"partitions"`
	Rights     Rights          `json:"rights"`
}

func (h *Handler) createTopic(w http.ResponseWriter, r *http.Request, principal string) {
	var c TopicConfig
	if err := decodeJSON(r, &c); err != nil {
		writeError(w, err, 0)
		return
	}
	cfg := wire.TopicConfig{Name: c.Name, Partitions: c.Partitions, RetentionBytes: c.RetentionBytes, RetentionMs: c.RetentionMs, SegmentBytes: c.SegmentBytes}
	if c.Memory {
		cfg.Flags |= wire.TopicMemory
	}
	if !auth.MayCreate(h.acl(), principal, cfg) {
		writeError(w, denied("admin topic "+c.Name), 0)
		return
	}
	t, err := h.e.CreateTopic(cfg)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusCreated, h.describe(principal, t))
}

func (h *Handler) describe(principal string, t *engine.Topic) TopicDescription {
	info := t.Info()
	c := info.Config
	d := TopicDescription{Config: TopicConfig{Name: c.Name, Partitions: c.Partitions, RetentionBytes: c.RetentionBytes,
		RetentionMs: c.RetentionMs, SegmentBytes: c.SegmentBytes, Memory: c.Flags&wire.TopicMemory != 0},
		Partitions: []PartitionJSON{}, Rights: h.rights(principal, c.Name)}
	for _, p := range info.Partitions {
		d.Partitions = append(d.Partitions, PartitionJSON(p))
	}
	return d
}

// describeTopic serves GET /v1/topics/{topic}. Describing needs any right on the topic; one the
// principal may not describe is refused whether or not it exists.
func (h *Handler) describeTopic(w http.ResponseWriter, r *http.Request, principal string) {
	name := r.PathValue("topic")
	if !auth.MayTopic(h.acl(), principal, auth.ActDescribe, name) {
		writeError(w, denied("describe topic "+name), 0)
		return
	}
	t := h.e.TopicByName(name)
	if t == nil {
		writeError(w, &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: name}, 0)
		return
	}
	writeJSON(w, http.StatusOK, h.describe(principal, t))
}

func (h *Handler) deleteTopic(w http.ResponseWriter, r *http.Request, principal string) {
	name := r.PathValue("topic")
	if !auth.MayTopic(h.acl(), principal, auth.ActAdmin, name) {
		writeError(w, denied("admin topic "+name), 0)
		return
	}
	if err := h.e.DeleteTopic(name); err != nil {
		writeError(w, err, 0)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// GroupOffset is one committed offset of a group, with the partition's end and the lag between.
type GroupOffset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
}

// GroupMember is one member of a group and the partitions it holds.
type GroupMember struct {
	Member     string  `json:"member"`
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// GroupDescription answers GET /v1/groups/{group}.
type GroupDescription struct {
	Name       string        `json:"name"`
	Generation uint32        `json:"generation"`
	Members    []GroupMember `json:"members"`
	Offsets    []GroupOffset `json:"offsets"`
	Lag        int64         `json:"lag"` // the sum over Offsets
}

func (h *Handler) listGroups(w http.ResponseWriter, _ *http.Request, principal string) {
	groups := slices.DeleteFunc(h.e.ListGroups(), func(g string) bool {
		return !auth.MayGroup(h.acl(), principal, auth.ActConsume, g)
	})
	writeJSON(w, http.StatusOK, map[string][]string{"groups": append([]string{}, groups...)})
}

// groupInfo describes group as the principal may see it: members and offsets on topics it may not
// describe are dropped (as engine/server's DescribeGroup).
func (h *Handler) groupInfo(principal, group string) (GroupDescription, error) {
	if !auth.MayGroup(h.acl(), principal, auth.ActConsume, group) {
		return GroupDescription{}, denied("consume group " + group)
	}
	info, err := h.e.DescribeGroup(group)
	if err != nil {
		return GroupDescription{}, err
	}
	d := GroupDescription{Name: info.Name, Generation: info.Generation, Members: []GroupMember{}, Offsets: []GroupOffset{}}
	hidden := func(topic string) bool { return !auth.MayTopic(h.acl(), principal, auth.ActDescribe, topic) }
	for _, m := range info.Members {
		if !hidden(m.Topic) {
			d.Members = append(d.Members, GroupMember{Member: m.Member, Topic: m.Topic, Partitions: append([]int32{}, m.Partitions...)})
		}
	}
	for _, o := range info.Offsets {
		if hidden(o.Topic) {
			continue
		}
		lag := max(o.End-o.Committed, 0)
		if o.End < 0 {
			lag = 0
		}
		d.Offsets = append(d.Offsets, GroupOffset{Topic: o.Topic, Partition: o.Partition, Committed: o.Committed, End: o.End, Lag: lag})
		d.Lag += lag
	}
	return d, nil
}

func (h *Handler) describeGroup(w http.ResponseWriter, r *http.Request, principal string) {
	d, err := h.groupInfo(principal, r.PathValue("group"))
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// SeekRequest moves a group's committed offset for one partition of a topic (or every partition,
// when Partition is absent) to Offset, or to the first record at or after Time (ms).
type SeekRequest struct {
	Topic     string `json:"topic"`
	Partition *int32 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
	Time      *int64 `json:"time,omitempty"`
}

// ResetRequest moves a group's committed offsets on every partition of Topic to its earliest
// retained record or its end ("earliest" or "latest").
type ResetRequest struct {
	Topic string `json:"topic"`
	To    string `json:"to"`
}

// commitAll commits offsets (partition -> offset) for group on topic, waiting for each to be
// durable. It needs consume on the group and on the topic, as a native Commit.
func (h *Handler) commitAll(ctx context.Context, principal, group, topic string, offsets map[int32]int64) error {
	if !auth.MayGroup(h.acl(), principal, auth.ActConsume, group) {
		return denied("consume group " + group)
	}
	if !auth.MayTopic(h.acl(), principal, auth.ActConsume, topic) {
		return denied("consume topic " + topic)
	}
	for p, off := range offsets {
		done := make(chan error, 1)
		h.e.CommitOffset(group, topic, p, off, func(err error) { done <- err })
		select {
		case err := <-done:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return &wire.ProtocolError{Code: wire.CodeTimeout, Message: "commit"}
		}
	}
	return nil
}

// partitionsOf returns the topic's partitions: one when only is set, else all.
func (h *Handler) partitionsOf(topic string, only *int32) ([]*engine.Partition, error) {
	t := h.e.TopicByName(topic)
	if t == nil {
		return nil, &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: topic}
	}
	if only != nil {
		p := t.Partition(*only)
		if p == nil {
			return nil, wire.CodeUnknownPartition
		}
		return []*engine.Partition{p}, nil
	}
	ps := make([]*engine.Partition, t.Partitions())
	for i := range ps {
		ps[i] = t.Partition(int32(i))
	}
	return ps, nil
}

// offsetAtTime finds the first offset of p whose record's timestamp is at or after ms (the end when
// none is), by subscribing at that time as a consumer would.
func (h *Handler) offsetAtTime(topic string, p int32, ms int64) (int64, error) {
	l, err := h.e.SubscribeLocal(wire.Subscribe{Topic: topic, Partition: p, Start: wire.StartTimestamp, StartValue: ms})
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Position(p), nil
}

// seekGroup serves POST /v1/groups/{group}/seek.
func (h *Handler) seekGroup(w http.ResponseWriter, r *http.Request, principal string) {
	var req SeekRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err, 0)
		return
	}
	if (req.Offset == nil) == (req.Time == nil) {
		writeError(w, badRequest("give one of offset and time"), 0)
		return
	}
	h.commitTo(w, r, principal, req.Topic, req.Partition, func(p *engine.Partition) (int64, error) {
		if req.Offset != nil {
			return *req.Offset, nil
		}
		return h.offsetAtTime(req.Topic, p.ID(), *req.Time)
	})
}

// resetGroup serves POST /v1/groups/{group}/reset.
func (h *Handler) resetGroup(w http.ResponseWriter, r *http.Request, principal string) {
	var req ResetRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err, 0)
		return
	}
	var at func(p *engine.Partition) int64
	switch req.To {
	case "earliest":
		at = (*engine.Partition).StartOffset
	case "latest":
		at = (*engine.Partition).NextOffset
	default:
		writeError(w, badRequest(`to: want "earliest" or "latest"`), 0)
		return
	}
	h.commitTo(w, r, principal, req.Topic, nil, func(p *engine.Partition) (int64, error) { return at(p), nil })
}

// commitTo commits, for each chosen partition of topic, the offset at returns, and answers with the
// group's description.
func (h *Handler) commitTo(w http.ResponseWriter, r *http.Request, principal, topic string, only *int32, at func(*engine.Partition) (int64, error)) {
	group := r.PathValue("group")
	if !auth.MayTopic(h.acl(), principal, auth.ActConsume, topic) {
		writeError(w, denied("consume topic "+topic), 0)
		return
	}
	parts, err := h.partitionsOf(topic, only)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	offsets := map[int32]int64{}
	for _, p := range parts {
		if offsets[p.ID()], err = at(p); err != nil {
			writeError(w, err, 0)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := h.commitAll(ctx, principal, group, topic, offsets); err != nil {
		writeError(w, err, 0)
		return
	}
	h.describeGroup(w, r, principal)
}
