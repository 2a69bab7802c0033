package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/wire"
)

// nativeClient starts a native listener on e and dials it with Sluice's Go client, both closed
// when the test ends.
func nativeClient(t *testing.T, e *engine.Engine) *client.Client {
	t.Helper()
	native, err := server.Start(server.Options{Addr: "127.0.0.1:0", Engine: e, Loops: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { native.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := client.Dial(ctx, native.Addr().String(), client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// txnRecs are records with the values given.
func txnRecs(vals ...string) []client.Record {
	out := make([]client.Record, len(vals))
	for i, v := range vals {
		out[i] = client.Record{Key: []byte("k"), Value: []byte(v)}
	}
	return out
}

// kgoValues consumes topic from the start with kgo at isolation iso until every value of want has
// arrived, and returns everything read, per partition in order ("p/value").
func kgoValues(t *testing.T, s *Server, topic string, iso kgo.IsolationLevel, want []string) []string {
	t.Helper()
	cl := newClient(t, s, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []string
	for !containsAll(got, want) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %q, waiting for %q: %v", got, want, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Attrs.IsControl() {
				t.Fatalf("control record delivered at %d/%d", r.Partition, r.Offset)
			}
			got = append(got, fmt.Sprintf("%d/%s", r.Partition, r.Value))
		})
	}
	return got
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// perPartition keeps got's values of partition p, in order.
func perPartition(got []string, p int) []string {
	var out []string
	prefix := fmt.Sprintf("%d/", p)
	for _, g := range got {
		if len(g) > len(prefix) && g[:len(prefix)] == prefix {
			out = append(out, g[len(prefix):])
		}
	}
	return out
}

// TestKgoReadCommitted: two transactions of Sluice's Go client, interleaved over two partitions;
// one aborts, the other commits, then a third commits and a plain record follows. A kgo consumer
// at read_committed reads the committed ones whole, in order, and nothing of the aborted one; at
// read_uncommitted it reads all three and no control record.
func TestKgoReadCommitted(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "tx", 2)
	sc := nativeClient(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	a, b := sc.NewTransaction(), sc.NewTransaction()
	must(a.Produce(ctx, "tx", 0, txnRecs("a1", "a2")...))
	must(b.Produce(ctx, "tx", 0, txnRecs("b1")...))
	must(b.Produce(ctx, "tx", 1, txnRecs("b2", "b3")...))
	must(a.Produce(ctx, "tx", 1, txnRecs("a3")...))
	must(a.Produce(ctx, "tx", 0, txnRecs("a4")...))
	must(b.Produce(ctx, "tx", 0, txnRecs("b4")...))
	must(b.Abort(ctx))
	must(a.Commit(ctx))
	must(a.Produce(ctx, "tx", 0, txnRecs("c1")...))
	must(a.Produce(ctx, "tx", 1, txnRecs("c2")...))
	must(a.Commit(ctx))
	_, _, err := e.TopicByName("tx").Partition(1).Append(testBatch()) // a plain record, value "v"
	must(err)

	committed := []string{"0/a1", "0/a2", "0/a4", "0/c1", "1/a3", "1/c2", "1/v"}
	got := kgoValues(t, s, "tx", kgo.ReadCommitted(), committed)
	if p0 := perPartition(got, 0); !slices.Equal(p0, []string{"a1", "a2", "a4", "c1"}) {
		t.Errorf("read_committed partition 0: %q", p0)
	}
	if p1 := perPartition(got, 1); !slices.Equal(p1, []string{"a3", "c2", "v"}) {
		t.Errorf("read_committed partition 1: %q", p1)
	}

	got = kgoValues(t, s, "tx", kgo.ReadUncommitted(), append(committed, "0/b1", "0/b4", "1/b2", "1/b3"))
	if p0 := perPartition(got, 0); !slices.Equal(p0, []string{"a1", "a2", "b1", "a4", "b4", "c1"}) {
		t.Errorf("read_uncommitted partition 0: %q", p0)
	}
	if p1 := perPartition(got, 1); !slices.Equal(p1, []string{"b2", "b3", "a3", "c2", "v"}) {
		t.Errorf("read_uncommitted partition 1: %q", p1)
	}
}

// fetchIso is fetchRequest at isolation level iso.
func fetchIso(version int16, topic string, offset int64, maxWait int32, iso int8) *kmsg.FetchRequest {
	req := fetchRequest(version, topic, offset, maxWait, 1, 1<<20, 1<<20)
	req.IsolationLevel = iso
	return req
}

// TestFetchIsolation: an open transaction's records are past the last stable offset: a
// read_committed Fetch gets none of them (LastStableOffset 0, high watermark past them), while
// read_uncommitted reads them (and reports the same LastStableOffset). A read_committed long-poll Fetch waiting on them is answered when the transaction
// commits, well before its max wait, with the records and the marker. After an aborted
// transaction a read_committed Fetch lists it (producer id, first offset) in AbortedTransactions;
// a read_uncommitted one has none.
func TestFetchIsolation(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "iso", 1)
	sc := nativeClient(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tx := sc.NewTransaction()
	if err := tx.Produce(ctx, "iso", 0, txnRecs("t1", "t2")...); err != nil {
		t.Fatal(err)
	}
	c := rawDial(t, s)
	for _, v := range []int16{4, 11, 12} {
		rc := roundTrip(t, c, 1, fetchIso(v, "iso", 0, 0, 1)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if rc.ErrorCode != 0 || len(rc.RecordBatches) != 0 || rc.LastStableOffset != 0 || rc.HighWatermark != 2 {
			t.Fatalf("v%d read_committed while open: error %d, %d bytes, lso %d, hw %d", v, rc.ErrorCode, len(rc.RecordBatches), rc.LastStableOffset, rc.HighWatermark)
		}
		ru := roundTrip(t, c, 2, fetchIso(v, "iso", 0, 0, 0)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if ru.ErrorCode != 0 || len(ru.RecordBatches) == 0 || ru.LastStableOffset != 0 || ru.HighWatermark != 2 {
			t.Fatalf("v%d read_uncommitted while open: error %d, %d bytes, lso %d, hw %d", v, ru.ErrorCode, len(ru.RecordBatches), ru.LastStableOffset, ru.HighWatermark)
		}
	}
	// Long-poll: waits while the transaction is open, answered at its commit.
	poll := fetchIso(12, "iso", 0, 30_000, 1)
	if _, err := c.Write(appendRequest(nil, 3, poll)); err != nil {
		t.Fatal(err)
	}
	apiVersionsOK(t, s) // the loops are free: the fetch waits
	start := time.Now()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	p := readResponse(t, c, 3, poll).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("answered after %v, not at the commit", d)
	}
	if p.LastStableOffset != 3 || p.HighWatermark != 3 {
		t.Fatalf("after commit: lso %d, hw %d; want 3, 3 (two records and the marker)", p.LastStableOffset, p.HighWatermark)
	}
	batches := splitBatches(t, p.RecordBatches)
	if len(batches) != 2 || batches[0].Attributes&0x30 != 0x10 || batches[1].Attributes&0x30 != 0x30 {
		t.Fatalf("after commit: %d batches %+v; want the transactional batch and its control batch", len(batches), batches)
	}
	// An aborted transaction, then a committed record: the abort is listed for read_committed.
	if err := tx.Produce(ctx, "iso", 0, txnRecs("x1")...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Produce(ctx, "iso", 0, txnRecs("t3")...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int16{4, 12} {
		rc := roundTrip(t, c, 4, fetchIso(v, "iso", 0, 0, 1)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
		want := []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: tx.ProducerID(), FirstOffset: 3}}
		if len(rc.AbortedTransactions) != 1 || rc.AbortedTransactions[0].ProducerID != want[0].ProducerID ||
			rc.AbortedTransactions[0].FirstOffset != 3 || rc.LastStableOffset != 7 {
			t.Fatalf("v%d read_committed after abort: aborted %+v, lso %d; want %+v, lso 7", v, rc.AbortedTransactions, rc.LastStableOffset, want)
		}
		// From past the aborted range, none.
		past := roundTrip(t, c, 5, fetchIso(v, "iso", 5, 0, 1)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if len(past.AbortedTransactions) != 0 || len(past.RecordBatches) == 0 {
			t.Fatalf("v%d read_committed from 5: aborted %+v, %d bytes", v, past.AbortedTransactions, len(past.RecordBatches))
		}
		ru := roundTrip(t, c, 6, fetchIso(v, "iso", 0, 0, 0)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if ru.AbortedTransactions != nil {
			t.Fatalf("v%d read_uncommitted: aborted %+v, want null", v, ru.AbortedTransactions)
		}
	}
}

// splitBatches parses the record batches of a Fetch answer's partition.
func splitBatches(t *testing.T, data []byte) []kmsg.RecordBatch {
	t.Helper()
	var out []kmsg.RecordBatch
	for len(data) > 0 {
		h, err := wire.ParseBatchHeader(data)
		if err != nil {
			t.Fatalf("batch at %d: %v", len(out), err)
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(data[:h.Size()]); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
		data = data[h.Size():]
	}
	return out
}

// TestFetchReadCommittedAllocs: a read_committed Fetch of a partition with an aborted transaction
// (its answer lists it) allocates nothing once the connection has seen its shape, as a
// read_uncommitted one does (TestFetchAllocs).
func TestFetchReadCommittedAllocs(t *testing.T) {
	s := fuzzServer(t)
	p := s.e.TopicByName("t").Partition(0)
	var bb wire.BatchBuilder
	bb.Reset()
	bb.SetProducer(77, 0, 0)
	bb.Append([]byte("k"), []byte("aborted"), nil, 1_700_000_000_000)
	batch, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	wire.MarkTransactional(batch)
	if _, _, err := p.Append(batch); err != nil {
		t.Fatal(err)
	}
	if err := s.e.EndTxn(77, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Append(testBatch()); err != nil {
		t.Fatal(err)
	}
	req := fetchRequest(12, "t", 0, 0, 1, 1<<20, 1<<20)
	req.IsolationLevel = 1
	frame := appendRequest(nil, 1, req)
	m := &memTransport{}
	c := newConn(s, m)
	defer c.close()
	least := 3 * len(testBatch())
	run := func() {
		m.in = frame
		m.out.Reset()
		c.onTraffic()
		if m.out.Len() < least || c.dead {
			t.Fatal("no answer")
		}
	}
	run() // the connection learns the request's shape
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(12)
	if err := resp.ReadFrom(m.out.Bytes()[9:]); err != nil {
		t.Fatal(err)
	}
	if ab := resp.Topics[0].Partitions[0].AbortedTransactions; len(ab) != 1 || ab[0].ProducerID != 77 || ab[0].FirstOffset != 1 {
		t.Fatalf("aborted transactions %+v, want producer 77 from 1", ab)
	}
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Fatalf("%v allocations per read_committed Fetch request, want 0", n)
	}
}

// listAt asks ListOffsets v6 for topic's partition 0 at timestamp ts (-1 latest, -2 earliest, or a
// time) at isolation iso, and returns the offset and timestamp answered.
func listAt(t *testing.T, s *Server, topic string, ts int64, iso int8) (int64, int64) {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.SetVersion(6)
	req.IsolationLevel = iso
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = ts
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := roundTrip(t, rawDial(t, s), 1, req).(*kmsg.ListOffsetsResponse)
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("ListOffsets %d: error %d", ts, p.ErrorCode)
	}
	return p.Offset, p.Timestamp
}

// TestListOffsetsIsolation: while a transaction is open past a committed record, ListOffsets'
// latest at read_committed is the last stable offset (the transaction's first offset) and at
// read_uncommitted the end; a timestamp found inside the open transaction answers the LSO at
// read_committed and the record's offset at read_uncommitted. Once the transaction commits both
// levels agree on the end.
func TestListOffsetsIsolation(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "lo", 1)
	if _, _, err := e.TopicByName("lo").Partition(0).Append(testBatch()); err != nil { // offset 0, ts 1_700_000_000_000
		t.Fatal(err)
	}
	sc := nativeClient(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tx := sc.NewTransaction()
	late := time.UnixMilli(1_800_000_000_000)
	if err := tx.Produce(ctx, "lo", 0, client.Record{Value: []byte("t1"), Timestamp: late}, client.Record{Value: []byte("t2"), Timestamp: late}); err != nil {
		t.Fatal(err)
	}
	if rc, _ := listAt(t, s, "lo", -1, 1); rc != 1 {
		t.Errorf("latest at read_committed while open: %d, want 1", rc)
	}
	if ru, _ := listAt(t, s, "lo", -1, 0); ru != 3 {
		t.Errorf("latest at read_uncommitted while open: %d, want 3", ru)
	}
	if off, ts := listAt(t, s, "lo", late.UnixMilli(), 1); off != 1 || ts != -1 {
		t.Errorf("timestamp inside the open transaction at read_committed: offset %d, timestamp %d; want 1, -1", off, ts)
	}
	if off, _ := listAt(t, s, "lo", late.UnixMilli(), 0); off != 1 {
		t.Errorf("timestamp inside the open transaction at read_uncommitted: offset %d, want 1", off)
	}
	if off, _ := listAt(t, s, "lo", 1_700_000_000_000, 1); off != 0 {
		t.Errorf("timestamp of the committed record at read_committed: offset %d, want 0", off)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, iso := range []int8{0, 1} {
		if off, _ := listAt(t, s, "lo", -1, iso); off != 4 {
			t.Errorf("latest at isolation %d after commit: %d, want 4", iso, off)
		}
	}
}

// kgoTxnProducer is a kgo client producing to topic with transactional id id.
func kgoTxnProducer(t *testing.T, s *Server, topic, id string) *kgo.Client {
	t.Helper()
	return newClient(t, s, kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
}

// kgoTxn produces vals (value "p/v": partition p) in one transaction of cl and commits or aborts it.
func kgoTxn(t *testing.T, cl *kgo.Client, commit bool, vals ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		r := &kgo.Record{Partition: int32(v[0] - '0'), Value: []byte(v[2:])}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("transactional produce %s: %v", v, err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("EndTransaction(commit %v): %v", commit, err)
	}
}

// nativeValues reads topic's partitions from the start with Sluice's Go client (whose consumers
// read committed data only) until want's count of records has arrived, then a little longer, and
// returns them as "p/value".
func nativeValues(t *testing.T, sc *client.Client, topic string, parts int32, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for p := range parts {
		cons, err := sc.Subscribe(ctx, topic, client.WithPartition(p), client.WithStartEarliest())
		if err != nil {
			t.Fatal(err)
		}
		for {
			short, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
			m, err := cons.Next(short)
			scancel()
			if err != nil {
				break // nothing more within the wait
			}
			got = append(got, fmt.Sprintf("%d/%s", p, m.Value))
		}
		cons.Close(ctx)
	}
	if len(got) < want {
		t.Fatalf("native consumer read %q, want %d records", got, want)
	}
	return got
}

// TestKgoTransactions: a kgo transactional producer (kgo.TransactionalID) commits a transaction
// over two partitions, aborts one, commits another. Sluice's Go client's consumer and a kgo
// read_committed consumer read the committed records, in order, and none of the aborted ones.
func TestKgoTransactions(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "ktx", 2)
	cl := kgoTxnProducer(t, s, "ktx", "kgo-txn")
	kgoTxn(t, cl, true, "0/a1", "1/a2", "0/a3")
	kgoTxn(t, cl, false, "0/x1", "1/x2")
	kgoTxn(t, cl, true, "1/b1", "0/b2")
	want0, want1 := []string{"a1", "a3", "b2"}, []string{"a2", "b1"}

	got := kgoValues(t, s, "ktx", kgo.ReadCommitted(), []string{"0/a1", "0/a3", "0/b2", "1/a2", "1/b1"})
	if p0, p1 := perPartition(got, 0), perPartition(got, 1); !slices.Equal(p0, want0) || !slices.Equal(p1, want1) {
		t.Errorf("kgo read_committed: %q and %q, want %q and %q", p0, p1, want0, want1)
	}
	got = nativeValues(t, nativeClient(t, e), "ktx", 2, 5)
	if p0, p1 := perPartition(got, 0), perPartition(got, 1); !slices.Equal(p0, want0) || !slices.Equal(p1, want1) {
		t.Errorf("native consumer: %q and %q, want %q and %q", p0, p1, want0, want1)
	}
}

// TestKgoTransactionFencing: a second producer with the same transactional id fences the first:
// the first's open transaction is aborted (read_committed never sees it), and its next produce or
// commit fails as fenced, while the second commits.
func TestKgoTransactionFencing(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "fence", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := kgoTxnProducer(t, s, "fence", "same-id")
	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := old.ProduceSync(ctx, &kgo.Record{Value: []byte("zombie")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cur := kgoTxnProducer(t, s, "fence", "same-id")
	kgoTxn(t, cur, true, "0/fresh") // InitProducerId at the next epoch first
	err := old.ProduceSync(ctx, &kgo.Record{Value: []byte("zombie2")}).FirstErr()
	if err == nil {
		err = old.EndTransaction(ctx, kgo.TryCommit)
	}
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("the fenced producer's produce or commit: %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
	}
	got := kgoValues(t, s, "fence", kgo.ReadCommitted(), []string{"0/fresh"})
	if !slices.Equal(got, []string{"0/fresh"}) {
		t.Errorf("read_committed: %q, want only the second producer's record", got)
	}
}

// TestTxnOffsetCommit: offsets sent with TxnOffsetCommit are committed when the transaction
// commits (visible to OffsetFetch and the engine's store), and dropped when it aborts; a request
// naming a producer id the transactional id does not have is INVALID_PRODUCER_ID_MAPPING.
func TestTxnOffsetCommit(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "in", 1)
	c := rawDial(t, s)
	init := kmsg.NewPtrInitProducerIDRequest()
	init.SetVersion(4)
	id := "offsets-txn"
	init.TransactionalID, init.TransactionTimeoutMillis, init.ProducerID, init.ProducerEpoch = &id, 60_000, -1, -1
	ir := roundTrip(t, c, 1, init).(*kmsg.InitProducerIDResponse)
	if ir.ErrorCode != 0 || ir.ProducerID < 0 {
		t.Fatalf("InitProducerId: %+v", ir)
	}
	commitOffset := func(corr int32, pid int64, offset int64, commit bool) (int16, int16) {
		add := kmsg.NewPtrAddOffsetsToTxnRequest()
		add.SetVersion(3)
		add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = id, pid, ir.ProducerEpoch, "g"
		ar := roundTrip(t, c, corr, add).(*kmsg.AddOffsetsToTxnResponse)
		toc := kmsg.NewPtrTxnOffsetCommitRequest()
		toc.SetVersion(3)
		toc.TransactionalID, toc.Group, toc.ProducerID, toc.ProducerEpoch = id, "g", pid, ir.ProducerEpoch
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = "in"
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Offset = offset
		rt.Partitions = append(rt.Partitions, rp)
		toc.Topics = append(toc.Topics, rt)
		tr := roundTrip(t, c, corr+1, toc).(*kmsg.TxnOffsetCommitResponse)
		if code := tr.Topics[0].Partitions[0].ErrorCode; code != ar.ErrorCode {
			t.Fatalf("AddOffsetsToTxn answered %d, TxnOffsetCommit %d", ar.ErrorCode, code)
		}
		end := kmsg.NewPtrEndTxnRequest()
		end.SetVersion(3)
		end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = id, pid, ir.ProducerEpoch, commit
		er := roundTrip(t, c, corr+2, end).(*kmsg.EndTxnResponse)
		return ar.ErrorCode, er.ErrorCode
	}
	storeBatches(t, s, "in", 5)
	if a, en := commitOffset(10, ir.ProducerID, 3, true); a != 0 || en != 0 {
		t.Fatalf("commit: AddOffsetsToTxn %d, EndTxn %d", a, en)
	}
	if got := e.CommittedOffset("g", "in", 0); got != 3 {
		t.Fatalf("after the commit the group's offset is %d, want 3", got)
	}
	if a, en := commitOffset(20, ir.ProducerID, 5, false); a != 0 || en != 0 {
		t.Fatalf("abort: AddOffsetsToTxn %d, EndTxn %d", a, en)
	}
	if got := e.CommittedOffset("g", "in", 0); got != 3 {
		t.Fatalf("after the abort the group's offset is %d, want 3 still", got)
	}
	if a, en := commitOffset(30, ir.ProducerID+1, 4, true); a != errInvalidProducerIDMapping || en != errInvalidProducerIDMapping {
		t.Fatalf("another producer id: AddOffsetsToTxn %d, EndTxn %d; want %d", a, en, errInvalidProducerIDMapping)
	}

	// A group native members use is refused, as OffsetCommit refuses it.
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "in", Group: "native", Partition: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	toc := kmsg.NewPtrTxnOffsetCommitRequest()
	toc.SetVersion(3)
	toc.TransactionalID, toc.Group, toc.ProducerID, toc.ProducerEpoch = id, "native", ir.ProducerID, ir.ProducerEpoch
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = "in"
	rt.Partitions = append(rt.Partitions, kmsg.NewTxnOffsetCommitRequestTopicPartition())
	toc.Topics = append(toc.Topics, rt)
	if code := roundTrip(t, c, 40, toc).(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; code != gErrUnknownMemberID {
		t.Fatalf("TxnOffsetCommit into a native group: %d, want %d", code, gErrUnknownMemberID)
	}
}

// TestKgoTransactionTimeout: a transaction the broker's transaction timeout aborted is not
// committed by a later EndTxn: the commit is refused INVALID_TXN_STATE, and read_committed never
// sees its records.
func TestKgoTransactionTimeout(t *testing.T) {
	s, e := startBrokerWith(t, func(o *engine.Options) { o.TxnTimeout = time.Second }, nil)
	createTopic(t, e, "slow", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := kgoTxnProducer(t, s, "slow", "slow-txn")
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("late")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pid, _, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for e.TxnOpen(pid) { // the expirer looks every second
		if ctx.Err() != nil {
			t.Fatal("the transaction was not aborted by the timeout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("commit after the timeout aborted the transaction: %v, want INVALID_TXN_STATE", err)
	}
	if _, _, err := e.TopicByName("slow").Partition(0).Append(testBatch()); err != nil { // value "v"
		t.Fatal(err)
	}
	if got := kgoValues(t, s, "slow", kgo.ReadCommitted(), []string{"0/v"}); !slices.Equal(got, []string{"0/v"}) {
		t.Fatalf("read_committed: %q, want only the plain record after the aborted transaction", got)
	}
}
