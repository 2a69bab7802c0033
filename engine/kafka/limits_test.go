package kafka

import (
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// produceRequest is an acks=-1 Produce of batch to topic's partition 0.
func produceRequest(topic string, acks int16, batch []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks = acks
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = topic
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = batch
	pt.Partitions = append(pt.Partitions, pp)
	req.Topics = append(req.Topics, pt)
	return req
}

// TestInflightProduceBytesCap: while a connection's acks=-1 produces awaiting an fsync exceed
// MaxInflightProduceBytes, its further requests are not read (nothing more is stored); once the
// fsync comes they are, and every produce is answered, in order, after it.
func TestInflightProduceBytesCap(t *testing.T) {
	fs := servertest.NewGatedFS()
	s, e := startBrokerWith(t, func(o *engine.Options) { o.FS = fs },
		func(o *Options) { o.MaxInflightProduceBytes = 1000 })
	createTopic(t, e, "cap", 1)
	var bb wire.BatchBuilder
	bb.Reset()
	bb.Append(nil, make([]byte, 600), nil, 1_700_000_000_000)
	batch, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	fs.Hold()
	t.Cleanup(fs.Release) // before the broker closes: it syncs

	c := rawDial(t, s)
	req := produceRequest("cap", -1, batch)
	var frames []byte
	for i := range 3 {
		frames = appendRequest(frames, int32(i), req)
	}
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	p := e.TopicByName("cap").Partition(0)
	deadline := time.Now().Add(10 * time.Second)
	for p.NextOffset() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// Two produces (1,200 bytes awaiting fsync, over the 1,000 cap) are stored; the third waits
	// unread. Give it time to be wrongly read.
	time.Sleep(200 * time.Millisecond)
	if n := p.NextOffset(); n != 2 {
		t.Fatalf("%d records stored while the fsync is held, want 2", n)
	}
	fs.Release()
	for i := range 3 {
		r := readResponse(t, c, int32(i), req).(*kmsg.ProduceResponse)
		if pr := r.Topics[0].Partitions[0]; pr.ErrorCode != 0 || pr.BaseOffset != int64(i) {
			t.Fatalf("produce %d: code %d offset %d", i, pr.ErrorCode, pr.BaseOffset)
		}
	}
}

// TestCloseAnswersFsyncProduces: Close waits for the fsync that acks=-1 produces wait for and
// answers them before the connections close.
func TestCloseAnswersFsyncProduces(t *testing.T) {
	fs := servertest.NewGatedFS()
	s, e := startBrokerWith(t, func(o *engine.Options) { o.FS = fs }, nil)
	createTopic(t, e, "drain", 1)
	fs.Hold()
	c := rawDial(t, s)
	req := produceRequest("drain", -1, testBatch())
	if _, err := c.Write(appendRequest(nil, 1, req)); err != nil {
		t.Fatal(err)
	}
	p := e.TopicByName("drain").Partition(0)
	for deadline := time.Now().Add(10 * time.Second); p.NextOffset() < 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	awaitOwing(t, s) // the answer is held for the fsync before Close starts, not just the record stored
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	time.Sleep(100 * time.Millisecond) // Close is draining
	fs.Release()
	expectStoredFirst(t, c, req, closed)
}

// TestCloseAnswersProduceInProgress: a Produce whose batches are stored as Close begins, before its
// answer is queued or held for the fsync, is still answered: Close waits for the loop to finish
// serving it (conn.producing), then for the sync. Before, Close found nothing owed, stopped the
// loops, and the client never heard of a record that was stored.
func TestCloseAnswersProduceInProgress(t *testing.T) {
	fs := servertest.NewGatedFS()
	s, e := startBrokerWith(t, func(o *engine.Options) { o.FS = fs }, nil)
	createTopic(t, e, "drain", 1)
	pause := servertest.NewPause()
	hook := pause.Hook
	produceHook.Store(&hook)
	defer produceHook.Store(nil)
	fs.Hold()
	c := rawDial(t, s)
	req := produceRequest("drain", -1, testBatch())
	if _, err := c.Write(appendRequest(nil, 1, req)); err != nil {
		t.Fatal(err)
	}
	pause.AwaitReached(t, "the produce was not served")
	if n := e.TopicByName("drain").Partition(0).NextOffset(); n != 1 {
		t.Fatalf("%d records stored before the answer, want 1", n)
	}
	closed := servertest.CloseWhilePaused(t, pause, fs, s.Close, s.conns.Stopping)
	expectStoredFirst(t, c, req, closed)
}

// expectStoredFirst reads the answer to Produce req (correlation id 1) from c: no error, the
// partition's first offset; then Close's result from closed, which must be nil.
func expectStoredFirst(t *testing.T, c net.Conn, req kmsg.Request, closed <-chan error) {
	t.Helper()
	r := readResponse(t, c, 1, req).(*kmsg.ProduceResponse)
	if pr := r.Topics[0].Partitions[0]; pr.ErrorCode != 0 || pr.BaseOffset != 0 {
		t.Fatalf("code %d offset %d", pr.ErrorCode, pr.BaseOffset)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestIdleTimeout: a connection silent for IdleTimeout is closed; one waiting on a long-poll Fetch
// longer than that is not.
func TestIdleTimeout(t *testing.T) {
	s, e := startBroker(t, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
	createTopic(t, e, "idle", 1)
	silent := rawDial(t, s)
	waiting := rawDial(t, s)
	fetch := fetchRequest(11, "idle", 0, 1500, 1, 1<<20, 1<<20)
	if _, err := waiting.Write(appendRequest(nil, 1, fetch)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, silent)
	readResponse(t, waiting, 1, fetch) // answered at its max wait, 5 idle periods later
}

// TestOutboundBudget: while the listener's connections together hold more than MaxOutboundTotal
// unsent, a Fetch waits on a connection with anything unsent, and one with nothing unsent is
// answered with at most 64 KiB beyond its first batch; with the total back under budget, answers
// are whole again.
func TestOutboundBudget(t *testing.T) {
	s := fuzzServer(t)
	s.opts.MaxOutboundTotal, s.opts.MaxFrame = 1<<20, 1<<20
	if _, err := s.e.CreateTopic(wire.TopicConfig{Name: "o", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	var bb wire.BatchBuilder
	bb.Reset()
	bb.Append(nil, make([]byte, 30<<10), nil, 1_700_000_000_000)
	batch, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, _, err := s.e.TopicByName("o").Partition(0).Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	stalled := &memTransport{outbound: 2 << 20} // a consumer that stopped reading
	cs := newConn(s, stalled)
	defer cs.close()
	cs.onTraffic() // measures it: the total is over budget
	fetch := appendRequest(nil, 1, fetchRequest(11, "o", 0, 0, 1, 1<<20, 1<<20))

	busy := &memTransport{outbound: 1}
	cb := newConn(s, busy)
	defer cb.close()
	busy.in = fetch
	cb.onTraffic()
	if busy.out.Len() != 0 || !cb.blocked.Load() {
		t.Fatalf("a connection with output unsent answered %d bytes over the budget", busy.out.Len())
	}

	idle := &memTransport{}
	ci := newConn(s, idle)
	defer ci.close()
	idle.in = fetch
	ci.onTraffic()
	records := func(m *memTransport) int {
		r := kmsg.NewPtrFetchResponse()
		r.SetVersion(11)
		if err := r.ReadFrom(m.out.Bytes()[8:]); err != nil {
			t.Fatal(err)
		}
		return len(r.Topics[0].Partitions[0].RecordBatches)
	}
	if n := records(idle); n == 0 || n > lowFetchBytes+len(batch) {
		t.Fatalf("over budget: %d bytes of records, want at most %d", n, lowFetchBytes+len(batch))
	}

	stalled.outbound = 0 // it read
	cs.onTraffic()
	idle.out.Reset()
	idle.in = fetch
	ci.onTraffic()
	if n := records(idle); n != 10*len(batch) {
		t.Fatalf("under budget: %d bytes of records, want %d", n, 10*len(batch))
	}
}

// awaitOwing waits until a connection of s holds a produce answer back for an fsync (what Close
// drains), failing after 10 s.
func awaitOwing(t *testing.T, s *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		owing := false
		s.conns.Range(func(c *conn) { owing = owing || c.waitingAcks.Load() > 0 })
		if owing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection holds an answer for the fsync")
		}
	}
}
