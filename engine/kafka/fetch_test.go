package kafka

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/wire"
)

// fetchRequest is a Fetch of topic's partition 0 from offset.
func fetchRequest(version int16, topic string, offset int64, maxWait, minBytes, maxBytes, partMax int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(version)
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = maxWait, minBytes, maxBytes
	req.SessionEpoch = -1
	t := kmsg.NewFetchRequestTopic()
	t.Topic = topic
	p := kmsg.NewFetchRequestTopicPartition()
	p.FetchOffset, p.PartitionMaxBytes = offset, partMax
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	return req
}

// roundTrip writes req on c and decodes its answer at req's version.
func roundTrip(t testing.TB, c net.Conn, corr int32, req kmsg.Request) kmsg.Response {
	t.Helper()
	if _, err := c.Write(appendRequest(nil, corr, req)); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, c, corr, req)
}

func readResponse(t testing.TB, c net.Conn, corr int32, req kmsg.Request) kmsg.Response {
	t.Helper()
	b := readFrame(t, c)
	if got := int32(binary.BigEndian.Uint32(b)); got != corr {
		t.Fatalf("correlation id %d, want %d", got, corr)
	}
	b = b[4:]
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() && req.Key() != keyApiVersions {
		var ok bool
		if b, ok = skipTags(b); !ok {
			t.Fatal("response header tags")
		}
	}
	if err := resp.ReadFrom(b); err != nil {
		t.Fatalf("%T v%d does not decode: %v", resp, req.GetVersion(), err)
	}
	return resp
}

// storeBatches appends n one-record batches to topic's partition 0.
func storeBatches(t testing.TB, s *Server, topic string, n int) {
	t.Helper()
	p := s.e.TopicByName(topic).Partition(0)
	for range n {
		if _, _, err := p.Append(testBatch()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFetchEveryVersion: the hand-encoded Fetch answer decodes with kmsg at every version served,
// and its records are the stored batches, byte for byte.
func TestFetchEveryVersion(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "f", 1)
	storeBatches(t, s, "f", 3)
	c := rawDial(t, s)
	r, _ := s.versions(keyFetch)
	for v := r.min; v <= r.max; v++ {
		resp := roundTrip(t, c, int32(v), fetchRequest(v, "f", 1, 0, 1, 1<<20, 1<<20)).(*kmsg.FetchResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("v%d: %+v", v, resp)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.HighWatermark != 3 || p.LastStableOffset != 3 || (v >= 5 && p.LogStartOffset != 0) {
			t.Fatalf("v%d: partition %+v", v, p)
		}
		var recs kmsg.RecordBatch
		if err := recs.ReadFrom(p.RecordBatches); err != nil {
			t.Fatalf("v%d: records: %v", v, err)
		}
		if recs.FirstOffset != 1 || len(p.RecordBatches) != 2*len(testBatch()) {
			t.Fatalf("v%d: first batch at %d, %d bytes of records", v, recs.FirstOffset, len(p.RecordBatches))
		}
	}
}

// TestFetchLongPoll: a Fetch with nothing to read waits (without holding the loop: another
// connection is served meanwhile) and is answered when a record arrives, well before its max wait.
func TestFetchLongPoll(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "lp", 1)
	c := rawDial(t, s)
	if _, err := c.Write(appendRequest(nil, 1, fetchRequest(11, "lp", 0, 20_000, 1, 1<<20, 1<<20))); err != nil {
		t.Fatal(err)
	}
	apiVersionsOK(t, s) // the loops are free
	start := time.Now()
	storeBatches(t, s, "lp", 1)
	resp := readResponse(t, c, 1, fetchRequest(11, "lp", 0, 0, 0, 0, 0)).(*kmsg.FetchResponse)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("answered after %v, not when the record arrived", d)
	}
	if p := resp.Topics[0].Partitions[0]; len(p.RecordBatches) != len(testBatch()) {
		t.Fatalf("%d bytes of records", len(p.RecordBatches))
	}
}

// TestFetchMaxWait: a Fetch whose min bytes never come is answered empty at its max wait, and the
// request pipelined behind it is answered after it, in order.
func TestFetchMaxWait(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "mw", 1)
	c := rawDial(t, s)
	start := time.Now()
	fetch := fetchRequest(11, "mw", 0, 300, 1, 1<<20, 1<<20)
	api := kmsg.NewPtrApiVersionsRequest()
	if _, err := c.Write(appendRequest(appendRequest(nil, 1, fetch), 2, api)); err != nil {
		t.Fatal(err)
	}
	resp := readResponse(t, c, 1, fetch).(*kmsg.FetchResponse)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("answered after %v, before its max wait", d)
	}
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) != 0 {
		t.Fatalf("partition %+v", p)
	}
	readResponse(t, c, 2, api)
}

// TestFetchBounds: the answer stops at the request's max bytes, but always carries the first batch
// whole, however large.
func TestFetchBounds(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "b", 1)
	storeBatches(t, s, "b", 100)
	c := rawDial(t, s)
	one := len(testBatch())
	resp := roundTrip(t, c, 1, fetchRequest(11, "b", 0, 0, 1, int32(10*one), 1<<20)).(*kmsg.FetchResponse)
	if n := len(resp.Topics[0].Partitions[0].RecordBatches); n != 10*one {
		t.Fatalf("max bytes %d: %d bytes of records", 10*one, n)
	}
	resp = roundTrip(t, c, 2, fetchRequest(11, "b", 0, 0, 1, 1, 1)).(*kmsg.FetchResponse)
	if n := len(resp.Topics[0].Partitions[0].RecordBatches); n != one {
		t.Fatalf("max bytes 1: %d bytes of records, want the first batch (%d)", n, one)
	}
}

// TestFetchSessions: an incremental fetch session is refused with FETCH_SESSION_ID_NOT_FOUND, and a
// full fetch asking for a new session is told none was created (session id 0).
func TestFetchSessions(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "fs", 1)
	c := rawDial(t, s)
	req := fetchRequest(11, "fs", 0, 0, 0, 1<<20, 1<<20)
	req.SessionID, req.SessionEpoch = 77, 1
	if resp := roundTrip(t, c, 1, req).(*kmsg.FetchResponse); resp.ErrorCode != errFetchSessionIDNotFound {
		t.Fatalf("incremental fetch: code %d", resp.ErrorCode)
	}
	req.SessionID, req.SessionEpoch = 0, 0
	if resp := roundTrip(t, c, 2, req).(*kmsg.FetchResponse); resp.ErrorCode != 0 || resp.SessionID != 0 {
		t.Fatalf("new session: code %d, session %d", resp.ErrorCode, resp.SessionID)
	}
}

// TestFetchErrors: unknown partitions and offsets out of range get their codes.
func TestFetchErrors(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "fe", 1)
	storeBatches(t, s, "fe", 2)
	c := rawDial(t, s)
	for i, tc := range []struct {
		topic  string
		offset int64
		code   int16
	}{{"nope", 0, errUnknownTopicOrPartition}, {"fe", 5, errOffsetOutOfRange}, {"fe", -1, errOffsetOutOfRange}} {
		// A long max wait: an error is answered at once, not at the max wait.
		start := time.Now()
		resp := roundTrip(t, c, int32(i), fetchRequest(11, tc.topic, tc.offset, 60_000, 1, 1<<20, 1<<20)).(*kmsg.FetchResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != tc.code {
			t.Fatalf("%s at %d: code %d, want %d", tc.topic, tc.offset, code, tc.code)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("%s at %d: answered after %v", tc.topic, tc.offset, d)
		}
	}
}

// TestAcksZeroNoAnswer: a produce with acks=0 is stored and answered with nothing; the next
// request's answer is the first to come.
func TestAcksZeroNoAnswer(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "a0", 1)
	c := rawDial(t, s)
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(7)
	produce.Acks = 0
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "a0"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = testBatch()
	pt.Partitions = append(pt.Partitions, pp)
	produce.Topics = append(produce.Topics, pt)
	api := kmsg.NewPtrApiVersionsRequest()
	if _, err := c.Write(appendRequest(appendRequest(nil, 1, produce), 2, api)); err != nil {
		t.Fatal(err)
	}
	readResponse(t, c, 2, api)
	if n := e.TopicByName("a0").Partition(0).NextOffset(); n != 1 {
		t.Fatalf("%d records stored", n)
	}
}

// TestAdminAPIs: ListOffsets, CreateTopics, DescribeConfigs, CreatePartitions, DeleteTopics,
// InitProducerId and FindCoordinator through kgo's raw requests.
func TestAdminAPIs(t *testing.T) {
	s, e := startBroker(t, nil)
	cl := newClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "adm", 3, 1
	ct.Configs = []kmsg.CreateTopicsRequestTopicConfig{{Name: "retention.ms", Value: kmsg.StringPtr("60000")}}
	bad := kmsg.NewCreateTopicsRequestTopic()
	bad.Topic, bad.NumPartitions, bad.ReplicationFactor = "adm2", 1, 3
	odd := kmsg.NewCreateTopicsRequestTopic()
	odd.Topic, odd.NumPartitions, odd.ReplicationFactor = "adm3", 1, -1
	odd.Configs = []kmsg.CreateTopicsRequestTopicConfig{{Name: "cleanup.policy", Value: kmsg.StringPtr("compact")}}
	create.Topics = append(create.Topics, ct, bad, odd)
	cr, err := create.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Topics[0].ErrorCode != 0 || cr.Topics[1].ErrorCode != errInvalidReplicationFactor || cr.Topics[2].ErrorCode != errInvalidConfig {
		t.Fatalf("create: %d %d %d", cr.Topics[0].ErrorCode, cr.Topics[1].ErrorCode, cr.Topics[2].ErrorCode)
	}
	topic := e.TopicByName("adm")
	if topic == nil || topic.Partitions() != 3 || topic.Config().RetentionMs != 60000 {
		t.Fatalf("created %+v", topic)
	}

	p := topic.Partition(1)
	for i := range 3 {
		var b wire.BatchBuilder
		b.Reset()
		b.Append(nil, []byte("v"), nil, int64(1000*(i+1)))
		batch, _ := b.Build()
		if _, _, err := p.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ ts, want int64 }{{-2, 0}, {-1, 3}, {1500, 1}, {3000, 2}, {9999, 3}} {
		lo := kmsg.NewPtrListOffsetsRequest()
		lt := kmsg.NewListOffsetsRequestTopic()
		lt.Topic = "adm"
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition, lp.Timestamp = 1, tc.ts
		lt.Partitions = append(lt.Partitions, lp)
		lo.Topics = append(lo.Topics, lt)
		resp, err := lo.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Topics[0].Partitions[0]; got.ErrorCode != 0 || got.Offset != tc.want {
			t.Fatalf("ListOffsets %d: code %d offset %d, want %d", tc.ts, got.ErrorCode, got.Offset, tc.want)
		}
	}

	dc := kmsg.NewPtrDescribeConfigsRequest()
	dr := kmsg.NewDescribeConfigsRequestResource()
	dr.ResourceType, dr.ResourceName = kmsg.ConfigResourceTypeTopic, "adm"
	dc.Resources = append(dc.Resources, dr)
	dresp, err := dc.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	cfgs := map[string]string{}
	for _, c := range dresp.Resources[0].Configs {
		cfgs[c.Name] = *c.Value
	}
	if cfgs["retention.ms"] != "60000" || cfgs["cleanup.policy"] != "delete" || cfgs["retention.bytes"] != "-1" {
		t.Fatalf("configs %v", cfgs)
	}

	cp := kmsg.NewPtrCreatePartitionsRequest()
	cpt := kmsg.NewCreatePartitionsRequestTopic()
	cpt.Topic, cpt.Count = "adm", 6
	cp.Topics = append(cp.Topics, cpt)
	cpr, err := cp.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if cpr.Topics[0].ErrorCode != errInvalidPartitions {
		t.Fatalf("CreatePartitions: code %d", cpr.Topics[0].ErrorCode)
	}

	ip := kmsg.NewPtrInitProducerIDRequest()
	ip.TransactionalID = kmsg.StringPtr("txn")
	if r, err := ip.RequestWith(ctx, cl); err != nil || r.ErrorCode != 0 || r.ProducerID < 0 || r.ProducerEpoch != 0 {
		t.Fatalf("transactional InitProducerId: %v, %+v", err, r)
	}
	tc := kmsg.NewPtrFindCoordinatorRequest()
	tc.CoordinatorKey, tc.CoordinatorType = "txn", 1
	if r, err := tc.RequestWith(ctx, cl); err != nil || (r.ErrorCode != 0 && len(r.Coordinators) == 0) ||
		(len(r.Coordinators) == 1 && (r.Coordinators[0].ErrorCode != 0 || r.Coordinators[0].NodeID != 0)) {
		t.Fatalf("FindCoordinator for a transactional id: %v, %+v", err, r)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "g"
	if r, err := fc.RequestWith(ctx, cl); err != nil || (r.ErrorCode != 0 && len(r.Coordinators) == 0) ||
		(len(r.Coordinators) == 1 && (r.Coordinators[0].ErrorCode != 0 || r.Coordinators[0].NodeID != 0)) {
		t.Fatalf("FindCoordinator: %v, %+v", err, r)
	}

	del := kmsg.NewPtrDeleteTopicsRequest()
	del.TopicNames = []string{"adm", "missing"}
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.Topic = kmsg.StringPtr("adm")
	dt2 := kmsg.NewDeleteTopicsRequestTopic()
	dt2.Topic = kmsg.StringPtr("missing")
	del.Topics = append(del.Topics, dt, dt2)
	delr, err := del.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if delr.Topics[0].ErrorCode != 0 || delr.Topics[1].ErrorCode != errUnknownTopicOrPartition || e.TopicByName("adm") != nil {
		t.Fatalf("DeleteTopics: %d %d", delr.Topics[0].ErrorCode, delr.Topics[1].ErrorCode)
	}
}

// TestInflightCapResumesReading: a connection at its cap of unanswered requests stops being read,
// and resumes as soon as an answer leaves, even when nothing else will wake it.
func TestInflightCapResumesReading(t *testing.T) {
	s, e := startBroker(t, func(o *Options) { o.MaxInflightRequests = 1 })
	createTopic(t, e, "cap", 1)
	c := rawDial(t, s)
	fetch := fetchRequest(11, "cap", 0, 50, 1, 1<<20, 1<<20)
	var frames []byte
	for i := range 4 {
		frames = appendRequest(frames, int32(i), fetch)
	}
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		readResponse(t, c, int32(i), fetch) // each at its max wait; the deadline fails a stall
	}
}

// TestFetchMinBytesWakes: a Fetch holding some records but fewer than its min bytes is answered
// when more arrive, not at its max wait.
func TestFetchMinBytesWakes(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "mb", 1)
	storeBatches(t, s, "mb", 1)
	one := len(testBatch())
	c := rawDial(t, s)
	fetch := fetchRequest(11, "mb", 0, 20_000, int32(2*one), 1<<20, 1<<20)
	if _, err := c.Write(appendRequest(nil, 1, fetch)); err != nil {
		t.Fatal(err)
	}
	apiVersionsOK(t, s) // the fetch has been read and waits
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	storeBatches(t, s, "mb", 1)
	resp := readResponse(t, c, 1, fetch).(*kmsg.FetchResponse)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("answered after %v, not when min bytes were reached", d)
	}
	if n := len(resp.Topics[0].Partitions[0].RecordBatches); n != 2*one {
		t.Fatalf("%d bytes of records, want %d", n, 2*one)
	}
}
