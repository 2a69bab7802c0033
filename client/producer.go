package client

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Header is one record header.
type Header = wire.Header

// Record is one record to produce. Produce copies Key, Value and Headers into the batch under
// construction before it returns: the caller may reuse them at once.
type Record struct {
	Key     []byte // nil: a null key (the producer picks the partition)
	Value   []byte // nil: a null value
	Headers []Header
	// Timestamp is the record's time, stored in milliseconds. Zero means the time its batch was
	// opened, at most the linger time before Produce: reading the clock once per batch rather than
	// once per record keeps clock reads (slow on many VMs) off the per-record path.
	Timestamp time.Time
	// Partition is used only by ManualPartitioner.
	Partition int32
}

// Result is the outcome of one produced record.
type Result struct {
	Partition int32
	Offset    int64 // the record's offset; -1 when it failed, at durability none, or unknown (ProducerOptions.Idempotent)
	Err       error
}

// ProducerOptions configure a Producer. Client.Producer starts from DefaultProducerOptions and applies
// the With… options in order; the result must pass Validate.
type ProducerOptions struct {
	// Durability says when a record counts as produced: DurabilityNone when handed to the
	// connection (no acknowledgement; failures are only logged), DurabilityWritten when the broker
	// stored it (survives a broker crash), DurabilityFsync when the broker's fdatasync covers it.
	// Default DurabilityWritten.
	Durability wire.Durability

	// Linger is how long a batch waits for more records before it is sent. Batches also leave when
	// they reach MaxBatchBytes, on Flush and Close, and at once for Publish. Default 5 ms; 0 or
	// negative: none.
	Linger time.Duration

	// MaxBatchBytes caps a batch's uncompressed size; a record larger than it travels alone.
	// Default 1 MiB, the broker's default limit. A broker that announces a lower limit in the
	// handshake (HelloReply.MaxBatchBytes) lowers the cap to it: batches are sized under the
	// broker's limit whatever this says.
	MaxBatchBytes int

	// MaxInFlight caps the produce requests sent and not yet answered. Default 16.
	MaxInFlight int

	// MaxBufferedBytes caps the bytes of records produced and not yet completed; Produce blocks
	// (until its context ends) while it is reached. Default 64 MiB.
	MaxBufferedBytes int

	// Idempotent stamps every batch with a producer id, an epoch and per-partition sequence numbers,
	// so that the broker stores a batch resent after a lost connection only once (and answers the
	// resend with the original offsets; when the broker no longer remembers them, beyond its last 16
	// batches of the producer, the records succeed with Offset -1). Default off.
	Idempotent bool
	// Compression is the batch codec. Default none. A batch the codec does not shrink is sent
	// uncompressed.
	Compression wire.Codec

	// Partitioner picks partitions. Default HashPartitioner. Required.
	Partitioner Partitioner

	// Retries is how many times a batch is sent again after its connection failed before its records
	// fail with ErrConnectionLost. Resends keep Produce order; a resent batch may be stored twice
	// (not with Idempotent). Default 5; 0 or negative: none. A batch a stopping broker refused
	// (CodeShuttingDown: nothing was stored) is always sent again, on the next connection, and does
	// not count.
	Retries int
}

// ProducerOption sets a field of ProducerOptions.
type ProducerOption func(*ProducerOptions)

// WithDurability sets when records count as produced.
func WithDurability(d wire.Durability) ProducerOption {
	return func(o *ProducerOptions) { o.Durability = d }
}

// WithLinger sets how long a batch waits for more records.
func WithLinger(d time.Duration) ProducerOption { return func(o *ProducerOptions) { o.Linger = d } }

// WithMaxBatchBytes caps a batch's size.
func WithMaxBatchBytes(n int) ProducerOption { return func(o *ProducerOptions) { o.MaxBatchBytes = n } }

// WithMaxInFlight caps unanswered produce requests.
func WithMaxInFlight(n int) ProducerOption { return func(o *ProducerOptions) { o.MaxInFlight = n } }

// WithMaxBufferedBytes caps the bytes of records not yet completed.
func WithMaxBufferedBytes(n int) ProducerOption {
	return func(o *ProducerOptions) { o.MaxBufferedBytes = n }
}

// WithIdempotence makes the producer idempotent: retries after a lost connection store nothing twice.
func WithIdempotence() ProducerOption { return func(o *ProducerOptions) { o.Idempotent = true } }

// WithCompression compresses batches with codec.
func WithCompression(codec wire.Codec) ProducerOption {
	return func(o *ProducerOptions) { o.Compression = codec }
}

// WithPartitioner sets the partitioner.
func WithPartitioner(p Partitioner) ProducerOption {
	return func(o *ProducerOptions) { o.Partitioner = p }
}

// WithRetries sets how many times a batch is resent after a connection failure.
func WithRetries(n int) ProducerOption { return func(o *ProducerOptions) { o.Retries = n } }

// DefaultProducerOptions returns the options Client.Producer starts from.
func DefaultProducerOptions() ProducerOptions {
	return ProducerOptions{
		Durability:       wire.DurabilityWritten,
		Linger:           5 * time.Millisecond,
		MaxBatchBytes:    1 << 20,
		MaxInFlight:      16,
		MaxBufferedBytes: 64 << 20,
		Partitioner:      HashPartitioner(),
		Retries:          5,
	}
}

// Validate reports the first invalid field, wrapping ErrOptions.
func (o *ProducerOptions) Validate() error {
	switch {
	case o.Partitioner == nil:
		return fmt.Errorf("%w: no partitioner", ErrOptions)
	case o.Durability > wire.DurabilityFsync:
		return fmt.Errorf("%w: durability %v", ErrOptions, o.Durability)
	case o.MaxBatchBytes < wire.BatchHeaderSize+16:
		return fmt.Errorf("%w: max batch bytes %d", ErrOptions, o.MaxBatchBytes)
	case o.MaxInFlight < 1:
		return fmt.Errorf("%w: max in flight %d", ErrOptions, o.MaxInFlight)
	case o.MaxBufferedBytes < o.MaxBatchBytes:
		return fmt.Errorf("%w: max buffered bytes %d below max batch bytes %d", ErrOptions, o.MaxBufferedBytes, o.MaxBatchBytes)
	case o.Compression > wire.CodecZstd:
		return fmt.Errorf("%w: compression %v", ErrOptions, o.Compression)
	}
	return nil
}

// Future is the pending result of one record sent with Send. A Future is good for one completed
// Wait: once Wait has returned the record's result, the Future goes back to a pool and must not be
// touched again. A Future that is never waited for is simply garbage collected.
type Future struct {
	ch  chan struct{} // capacity 1: signalled once res is set
	res Result
}

// futurePool recycles Futures so Send allocates nothing per record in steady state. A Future
// returns to the pool only from Wait, after its single result has been received.
var futurePool = sync.Pool{New: func() any { return &Future{ch: make(chan struct{}, 1)} }}

// Wait blocks until the record is produced or has failed, or ctx ends. After a result (success or
// the record's error) the Future is recycled; after ctx's error it may be waited for again.
func (f *Future) Wait(ctx context.Context) (Result, error) {
	select {
	case <-f.ch:
		res := f.res
		f.res = Result{}
		futurePool.Put(f)
		return res, res.Err
	case <-ctx.Done():
		return Result{Partition: -1, Offset: -1}, ctx.Err()
	}
}

// completion is how one record's result is reported: a callback, a Future, or both.
type completion struct {
	fn  func(Result)
	fut *Future
}

// pbatch is a batch under construction, waiting or in flight. Batches are recycled with their
// builder and completion slice, so steady-state production allocates nothing.
type pbatch struct {
	p         *Producer
	partition int32
	b         *wire.BatchBuilder
	done      []completion // one per record, in record order
	bytes     int          // buffered bytes the batch accounts for
	created   time.Time
	createdMs int64  // created in milliseconds: the timestamp of records produced without one
	urgent    bool   // a Publish waits: send without lingering
	seq       uint64 // send order, kept across retries
	// sub orders the pieces of a split batch: they share seq and take sub values in [sub, sub+span)
	// of the batch they were cut from, in record order, so (seq, sub) orders every batch and piece
	// (retryLocked, admit). A sealed batch has sub 0 and span splitSpan.
	sub, span uint64
	data      []byte // the built batch, valid until b is reset; nil before the first send
	attempts  int    // sends after connection failures
	epoch     int16  // the producer epoch the batch was stamped with (idempotent producers)
	pid       int64  // the producer id it was stamped with (idempotent producers)
	baseSeq   int32  // the sequence of its first record (idempotent producers)
	// tooLarge is the broker's refusal of the batch as too large (CodeBatchTooLarge), nil otherwise.
	// Set by complete before b goes back to retry; the sender then splits b in halves.
	tooLarge error
	// careful marks b as refused as too large (tooLarge) or a piece of such a batch: it goes out
	// alone, nothing after it until it is answered (Producer.holding). Guarded by p.mu.
	careful bool
	// counted says b is one of the producer's unresolved batches on p.sentOn. Guarded by p.mu: set
	// by the sender when it hands b to a connection, cleared by whoever resolves b (its answer, its
	// failure, or its move to p.retry).
	counted bool
	// avoid is a connection that refused b with CodeShuttingDown: b is resent only on another.
	// Set under p.mu before b goes back to retry; read by the sender once it takes b again.
	avoid *conn
}

// Producer sends records of one topic asynchronously, in batches per partition. All methods are safe
// for concurrent use. Records of one partition are stored in the order Produce accepted them, also
// across reconnects: the offsets the producer acknowledges increase in Produce order. After a
// connection fails, no batch goes out on the next connection until every batch in flight on the
// failed one has been answered or failed, and then the failed ones are resent first, in their
// original order. Without idempotence a record may be stored twice (an earlier copy before the
// acknowledged one) when its connection failed after the broker stored it and before the answer
// arrived.
//
// The order rule (admit): a batch is handed to connection cn only when no batch sealed before
// it is unresolved on another connection or waiting in retry. Batches are sealed and sent in seq
// order, the broker stores the produce requests of one connection in the order they arrive, and a
// connection's batches are resolved before the next connection takes any, so the stored (and
// acknowledged) order is the seq order.
type Producer struct {
	c      *Client
	topic  string
	topicB []byte // topic, as the produce header wants it
	nparts int32
	opts   ProducerOptions

	mu          sync.Mutex
	open        []*pbatch     // guarded by mu: per partition, the batch taking records, or nil
	nopen       int           // guarded by mu: the non-nil entries of open
	lastBusy    time.Time     // guarded by mu: when a batch was last sealed or a Produce waited for space
	lastFull    bool          // guarded by mu: the last batch sealed was full (round's callerSeals)
	ready       []*pbatch     // guarded by mu: batches closed to records, waiting for an in-flight slot
	retry       []*pbatch     // guarded by mu: batches to resend after a connection failure, by seq
	pid         int64         // guarded by mu: idempotent producer id, chosen at the first send
	epoch       int16         // guarded by mu: bumped when a batch is given up on
	seqs        []int32       // guarded by mu: next sequence per partition
	free        []*pbatch     // guarded by mu: recycled batches
	inflight    int           // guarded by mu: batches handed to the sender and not finished
	buffered    int           // guarded by mu: bytes of records not yet completed
	outstanding int           // guarded by mu: records not yet completed
	space       chan struct{} // guarded by mu: closed when buffered drops; nil while nobody waits
	idle        chan struct{} // guarded by mu: closed when outstanding reaches 0; nil while nobody waits
	flushing    int           // guarded by mu: Flush calls in progress; batches do not linger meanwhile
	closed      bool          // guarded by mu: Produce refuses records
	sticky      int32         // guarded by mu: the partition keyless records go to
	seq         uint64        // guarded by mu
	scratch     Record        // guarded by mu: the record the partitioner is looking at
	// sentOn is the connection the unresolved batches were handed to, and unresolved how many
	// batches (those with counted set) have neither been answered nor failed nor moved to retry.
	// Guarded by mu. sentOn changes only while unresolved is 0: every counted batch is on sentOn.
	sentOn     *conn
	unresolved int
	// holding is the careful batch in flight, nil when none: while it is set the sender sends
	// nothing, so no batch after it can be stored before it (or its pieces, should it be refused
	// as too large again). Guarded by mu: set by the sender as it takes a careful batch, cleared by
	// whoever resolves it (finish, complete, admit).
	holding *pbatch
	// learned is a batch limit (bytes) learned from refusals, 0 for none: half the size of the
	// last batch the broker refused as too large, for brokers that announce no limit. Guarded by mu.
	learned int

	stopped    atomic.Bool // the sender has stopped: failures are final
	wake       chan struct{}
	stop       chan struct{}
	done       chan struct{}
	sendCtx    context.Context
	sendCancel context.CancelFunc

	// sending is the right to run a send round (round): whoever swaps it from false to true is the
	// sender until the round ends, the goroutine calling Produce as well as run. again asks the
	// sender to go round once more: it is set before every attempt, so a caller that finds sending
	// taken leaves its batch to the round in progress or the next (kick). sendBuf is the sender's
	// scratch list of batches taken in a round, owned by whoever holds sending. wake (capacity 1)
	// asks run for a round it must do.
	sending atomic.Bool
	again   atomic.Bool
	sendBuf []*pbatch
	// timer fires when the next lingering batch is due; reset by the sender at the end of each round
	// that leaves one lingering, received by run.
	timer *time.Timer
}

// Producer returns a producer for topic. It looks up the topic's partition count with a Describe
// request bounded by the client's request timeout; the topic must exist (describing never creates
// one), else the error matches wire.CodeUnknownTopic.
func (c *Client) Producer(topic string, opts ...ProducerOption) (*Producer, error) {
	o := DefaultProducerOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := c.requestContext()
	ti, err := c.describe(ctx, topic)
	cancel()
	if err != nil {
		return nil, wrapf(err, "producer for topic %s", topic)
	}
	n := int32(len(ti.Partitions))
	if n == 0 {
		n = int32(ti.Config.Partitions)
	}
	if n <= 0 {
		return nil, fmt.Errorf("client: producer for %s: the topic has no partitions: %w", topic, wire.CodeUnknownPartition)
	}
	p := &Producer{
		c: c, topic: topic, topicB: []byte(topic), nparts: n, opts: o,
		open: make([]*pbatch, n),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	p.sendCtx, p.sendCancel = context.WithCancel(c.closeCtx)
	p.timer = time.NewTimer(time.Hour)
	p.timer.Stop()
	go p.run()
	return p, nil
}

// Topic is the producer's topic.
func (p *Producer) Topic() string { return p.topic }

// Partitions is the topic's partition count.
func (p *Producer) Partitions() int32 { return p.nparts }

// Produce queues rec and reports its result to fn, which runs exactly once on a client goroutine
// (the connection's reader, or the producer's sender) or, when the batch fails before it is sent or
// needs no answer (DurabilityNone), on the goroutine calling Produce, Send, Publish or Flush that
// sent it; it must not block, nor take a lock held around Produce. fn may be nil. Produce blocks
// while MaxBufferedBytes are buffered, until ctx ends, and while the batch it sends itself (see
// kick) waits for room in the socket's send buffer, which ctx does not end (a broker that stops
// reading fails the connection by the ping's deadline); its error says the record was not
// queued (and fn will not run): ErrRecordTooLarge, ErrClosed, or ctx's error. The record's own
// failure reaches fn in Result.Err: ErrConnectionLost after the retries, or the broker's refusal.
func (p *Producer) Produce(ctx context.Context, rec Record, fn func(Result)) error {
	return p.produce(ctx, &rec, completion{fn: fn}, false)
}

// Send queues rec and returns a Future for its result. See Produce.
func (p *Producer) Send(ctx context.Context, rec Record) (*Future, error) {
	f := futurePool.Get().(*Future)
	if err := p.produce(ctx, &rec, completion{fut: f}, false); err != nil {
		futurePool.Put(f)
		return nil, err
	}
	return f, nil
}

// Publish produces rec and waits for its result. Its batch is sent without lingering (records
// produced meanwhile may still join it). It returns Produce's errors, then the record's (Result.Err),
// or ctx's.
func (p *Producer) Publish(ctx context.Context, rec Record) (Result, error) {
	f := futurePool.Get().(*Future)
	if err := p.produce(ctx, &rec, completion{fut: f}, true); err != nil {
		futurePool.Put(f)
		return Result{Partition: -1, Offset: -1}, err
	}
	return f.Wait(ctx)
}

// recordOverhead bounds what a record adds to a batch beyond RecordSize(0, 0, …): the offset and
// timestamp deltas' varints.
const recordOverhead = 20

func (p *Producer) produce(ctx context.Context, rec *Record, comp completion, urgent bool) error {
	ts := int64(-1)
	if !rec.Timestamp.IsZero() {
		ts = rec.Timestamp.UnixMilli()
	}
	size := wire.RecordSize(0, 0, rec.Key, rec.Value, rec.Headers) + recordOverhead
	if limit := p.c.opts.MaxFrame - wire.FrameHeaderSize - 7 - len(p.topic) - wire.BatchHeaderSize; size > limit {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooLarge, size, limit)
	}
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return ErrClosed
		}
		if p.buffered == 0 || p.buffered+size <= p.opts.MaxBufferedBytes {
			break
		}
		if p.space == nil {
			p.space = make(chan struct{})
		}
		space := p.space
		p.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
		p.lastBusy = time.Now()
	}
	p.scratch = *rec
	part := p.opts.Partitioner.Partition(&p.scratch, p.nparts)
	p.scratch = Record{}
	if part == AnyPartition {
		part = p.sticky
	} else if part < 0 || part >= p.nparts {
		p.mu.Unlock()
		return fmt.Errorf("client: partitioner chose partition %d of %d: %w", part, p.nparts, wire.CodeUnknownPartition)
	}
	wake := urgent
	limit := p.batchLimit()
	b := p.open[part]
	if b != nil && b.b.Size()+size > limit {
		p.sealLocked(b, true)
		b = nil
	}
	if b == nil {
		b = p.newBatchLocked(part)
		p.open[part] = b
		p.nopen++
		wake = true // the sender arms the new batch's linger timer
	}
	if ts < 0 {
		ts = b.createdMs
	}
	b.b.Append(rec.Key, rec.Value, rec.Headers, ts)
	b.done = append(b.done, comp)
	b.bytes += size
	b.urgent = b.urgent || urgent
	p.buffered += size
	p.outstanding++
	if b.b.Size() >= limit {
		p.sealLocked(b, true)
		wake = true
	}
	p.mu.Unlock()
	if wake {
		// Send on this goroutine if no round is running (kick): the sender goroutine's wake-up cost
		// tens of microseconds per batch, half of a 20k/s run's scheduler latency.
		p.kick(true)
	}
	return nil
}

// batchLimit is the most uncompressed bytes a batch may hold: MaxBatchBytes, or the broker's batch
// limit from the last handshake, or the limit learned from refusals, whichever is lowest. Called
// with p.mu held.
func (p *Producer) batchLimit() int {
	limit := p.opts.MaxBatchBytes
	if n := int(p.c.brokerMaxBatch.Load()); n > 0 {
		limit = min(limit, n)
	}
	if p.learned > 0 {
		limit = min(limit, p.learned)
	}
	return limit
}

func (p *Producer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Producer) newBatchLocked(part int32) *pbatch {
	var b *pbatch
	if n := len(p.free); n > 0 {
		b = p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
	} else {
		b = &pbatch{p: p, b: wire.NewBatchBuilder(min(p.opts.MaxBatchBytes, 64<<10))}
		b.b.SetCompression(p.opts.Compression)
	}
	b.partition = part
	b.created = time.Now()
	b.createdMs = b.created.UnixMilli()
	return b
}

// callerSealGap is the least time since the last seal (or wait for buffer space, p.lastBusy) for a
// Produce caller to seal a batch that is neither full nor urgent and send it itself (see round):
// about what waking the sender goroutine costs on these VMs. Records arriving further apart gain nothing from the wake-up's delay, only
// latency; closer together, the delay lets them share a batch.
const callerSealGap = 20 * time.Microsecond

// sealLocked closes b to new records and queues it for sending. full says b was sealed because the
// next record would not fit (or it reached the batch limit).
func (p *Producer) sealLocked(b *pbatch, full bool) {
	p.lastBusy = time.Now()
	p.lastFull = full
	p.open[b.partition] = nil
	p.nopen--
	p.seq++
	b.seq, b.sub, b.span = p.seq, 0, splitSpan
	p.ready = append(p.ready, b)
	if b.partition == p.sticky {
		p.sticky = (p.sticky + 1) % p.nparts
	}
}

// run is the sender goroutine. It runs the rounds a Produce caller cannot run itself (one would
// block: waiting for a connection, resending after a failure) and those nobody calls for: a linger
// timer that fires, an in-flight slot freed by an answer (finish, on the reader goroutine), a
// batch put back for a retry.
func (p *Producer) run() {
	defer close(p.done)
	for {
		select {
		case <-p.wake:
		case <-p.timer.C:
		case <-p.stop:
			p.timer.Stop()
			return
		}
		p.kick(false)
	}
}

// kick runs send rounds until no goroutine has asked for one that has not run, unless another
// goroutine is the sender: then it leaves the work to it. One goroutine at a time holds p.sending,
// so batches leave in seal order as they did from a single sender goroutine. No request is lost:
// a caller stores again before trying p.sending, and the sender clears again before its round
// and loads it after releasing p.sending, so either the caller becomes the sender or the sender
// sees again set (Go's atomics are sequentially consistent) and goes round once more, its round
// taking p.mu after the caller queued its batch under it.
//
// inline is true on a Produce caller's goroutine (see round): it never waits for a connection.
func (p *Producer) kick(inline bool) {
	p.again.Store(true)
	for p.again.Load() {
		if !p.sending.CompareAndSwap(false, true) {
			return // the sender in its round sees again and goes round once more
		}
		p.again.Store(false)
		p.round(inline)
		p.sending.Store(false)
	}
}

// round seals lingering batches when due and sends queued batches while in-flight slots are free;
// it arms the linger timer for the next batch due. Called by the holder of p.sending only. An inline
// round (a Produce caller's) sends only on a live connection and only when nothing waits for a
// resend: otherwise it leaves the batches queued and wakes run, which may wait.
func (p *Producer) round(inline bool) {
	p.mu.Lock()
	linger := p.opts.Linger
	if p.flushing > 0 || p.closed {
		linger = 0
	}
	now := time.Now()
	next := time.Duration(-1)
	// A batch past its linger is sealed only when an in-flight slot can take it: while every slot
	// waits on the broker (a slow fdatasync, say), records keep joining the open batch, so the
	// batches grow with the back-pressure instead of queueing one small request per record.
	free := p.opts.MaxInFlight - p.inflight - len(p.ready) - len(p.retry)
	// A Produce caller seals a batch that is neither full nor urgent only when the last batch sealed
	// was not full either, and it was sealed, and the last Produce waited for buffer space, at least
	// callerSealGap ago. A producer that fills its batches, seals them faster than that, or is held
	// back by MaxBufferedBytes (one producing as fast as it can) leaves the batch to run: the
	// sender's wake-up delay is time in which more records join it, as before. Sealed by the
	// caller, which has no such delay, it would go out with the one record that opened it.
	callerSeals := !inline || !p.lastFull && now.Sub(p.lastBusy) >= callerSealGap
	declined := false
	for _, b := range p.open {
		if b == nil {
			continue
		}
		if age := now.Sub(b.created); b.urgent || age >= linger {
			if free > 0 && (callerSeals || b.urgent) || p.closed || p.flushing > 0 {
				p.sealLocked(b, false)
				free--
			} else if free > 0 {
				declined = true
			}
		} else if d := linger - age; next < 0 || d < next {
			next = d
		}
	}
	if next >= 0 {
		p.timer.Reset(next)
	}
	if declined && p.inflight+len(p.ready)+len(p.retry) == 0 {
		// Nothing in flight whose answer would wake run (finish) to seal the batch: wake it now.
		p.poke()
	}
	var cn *conn
	if inline {
		if cn = p.c.liveConn(); cn == nil || len(p.retry) > 0 {
			more := len(p.ready) > 0 || len(p.retry) > 0
			p.mu.Unlock()
			if more {
				p.poke()
			}
			return
		}
	}
	send := p.sendBuf
	for p.inflight < p.opts.MaxInFlight && p.holding == nil {
		var b *pbatch
		if len(p.retry) > 0 {
			b = p.retry[0]
			p.retry = append(p.retry[:0], p.retry[1:]...)
		} else if len(p.ready) > 0 {
			b = p.ready[0]
			p.ready = append(p.ready[:0], p.ready[1:]...)
		} else {
			break
		}
		p.inflight++
		send = append(send, b)
		if b.careful || b.tooLarge != nil {
			p.holding = b // it goes alone: nothing after it until it is answered
		}
	}
	p.mu.Unlock()
	for i, b := range send {
		p.send(b, cn)
		send[i] = nil
	}
	p.sendBuf = send[:0]
}

// send writes one batch to cn, or when cn is nil to the live connection, waiting for one if need
// be.
func (p *Producer) send(b *pbatch, cn *conn) {
	if b.data == nil {
		if p.opts.Idempotent {
			p.stamp(b)
		}
		if err := p.build(b); err != nil {
			p.finish(b, -1, err, true)
			return
		}
	}
	var err error
	if cn == nil {
		cn, err = p.c.waitConn(p.sendCtx)
	}
	if err == nil && cn == b.avoid {
		// The broker behind cn is stopping and refused this batch: wait for it to close the
		// connection, and send on the next one.
		select {
		case <-cn.done:
			cn, err = p.c.waitConn(p.sendCtx)
		case <-p.sendCtx.Done():
			err = p.sendCtx.Err()
		}
	}
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		p.finish(b, -1, err, true)
		return
	}
	if !p.admit(b, cn) {
		return
	}
	if target := splitTarget(b, cn); target > 0 {
		careful := b.tooLarge != nil
		pieces, err := p.split(b, target)
		if err != nil {
			p.finish(b, -1, err, true)
			return
		}
		p.mu.Lock()
		if careful {
			// The halves of a refused batch may be refused too: each goes out alone (holding), the
			// ones after b waiting in retry, in order.
			b.careful = true
			for _, nb := range pieces {
				nb.careful = true
				p.retryLocked(nb)
			}
			pieces = nil
		} else {
			// Cut to the limit cn's broker announced, the pieces fit: they go out now, on cn, right
			// after b and before any later batch, in flight and unresolved on cn as b is (the
			// in-flight cap is exceeded by them for their round trip).
			for _, nb := range pieces {
				nb.counted = true
				p.unresolved++
				p.inflight++
			}
		}
		p.mu.Unlock()
		p.sendOn(b, cn)
		for _, nb := range pieces {
			p.sendOn(nb, cn)
		}
		return
	}
	p.sendOn(b, cn)
}

// build encodes b's records (stamped already, for an idempotent producer) into b.data with the producer's codec (or none
// when the codec does not shrink them).
func (p *Producer) build(b *pbatch) error {
	data, err := b.b.Build()
	if err == nil && p.opts.Compression != wire.CodecNone && len(data) >= b.b.Size() {
		// The codec did not shrink the records (random or already compressed bytes): they travel
		// as they are, so a batch filled to MaxBatchBytes never grows past it on the wire.
		b.b.SetCompression(wire.CodecNone)
		data, err = b.b.Build()
		b.b.SetCompression(p.opts.Compression)
	}
	if err != nil {
		return fmt.Errorf("client: build batch: %w", err)
	}
	b.data = data
	return nil
}

// splitSpan is the room in the (seq, sub) order a sealed batch gives its pieces: room for 63
// successive halvings, far more than any batch has records to split.
const splitSpan = 1 << 63

// splitTarget is the size of the pieces b must be cut into before it goes out on cn, or 0 when it
// goes whole: the batch limit cn's broker announced, when b (built under a higher limit, or before
// a reconnection to a broker with a lower one) is above it; half b's size when the broker refused b
// as too large. A batch of one record is never cut.
func splitTarget(b *pbatch, cn *conn) int {
	switch {
	case b.b.Count() < 2:
		return 0
	case cn.maxBatch > 0 && b.b.Size() > cn.maxBatch:
		return cn.maxBatch
	case b.tooLarge != nil:
		return (b.b.Size() + wire.BatchHeaderSize + 1) / 2
	}
	return 0
}

// split cuts b into pieces of at most target uncompressed bytes, at least one record each, in
// record order: b keeps the first records and returns the pieces after it. The pieces share b's
// seq, and divide b's sub range among them in order; they keep b's partition, attempts, urgency,
// creation time and each record's completion and timestamp. Idempotence: b was stamped when it was
// first built (send stamps before it splits), and its pieces carry b's producer id and epoch and consecutive
// base sequences from b's, so together they carry exactly the sequences b did and the broker sees
// the same sequence stream as if b had been stored whole (a broker that refused b stored none of
// it). Each piece, b included, is built. Called by the sender (the holder of p.sending), without p.mu, for a batch
// it holds (b is not registered on any connection).
func (p *Producer) split(b *pbatch, target int) ([]*pbatch, error) {
	b.b.SetCompression(wire.CodecNone)
	raw, err := b.b.Build()
	b.b.SetCompression(p.opts.Compression)
	if err != nil {
		return nil, fmt.Errorf("client: split batch: %w", err)
	}
	raw = slices.Clone(raw) // b's builder is refilled from it below
	var it wire.RecordIter
	if _, err := it.Reset(raw); err != nil {
		return nil, fmt.Errorf("client: split batch: %w", err)
	}
	if err := it.Check(); err != nil { // b is untouched until every record is known to read back
		return nil, fmt.Errorf("client: split batch: %w", err)
	}
	done := slices.Clone(b.done)
	b.b.Reset()
	b.done, b.bytes, b.data, b.tooLarge = b.done[:0], 0, nil, nil
	var pieces []*pbatch
	cur := b
	var rec wire.Record
	var hdrs []wire.Header
	for i := 0; it.Next(&rec); i++ {
		hdrs = rec.AppendHeaders(hdrs[:0])
		size := wire.RecordSize(0, 0, rec.Key, rec.Value, hdrs) + recordOverhead // as produce counted it
		if cur.b.Count() > 0 && cur.b.Size()+size > target {
			p.mu.Lock()
			nb := p.newBatchLocked(b.partition)
			p.mu.Unlock()
			nb.seq, nb.attempts, nb.urgent, nb.created, nb.createdMs = b.seq, b.attempts, b.urgent, b.created, b.createdMs
			pieces = append(pieces, nb)
			cur = nb
		}
		cur.b.Append(rec.Key, rec.Value, hdrs, rec.Timestamp)
		cur.done = append(cur.done, done[i])
		cur.bytes += size
	}
	step := b.span / uint64(len(pieces)+1)
	seq := b.baseSeq
	for i, pb := range append([]*pbatch{b}, pieces...) {
		pb.sub, pb.span = b.sub+uint64(i)*step, step
		if p.opts.Idempotent {
			pb.b.SetProducer(b.pid, b.epoch, seq)
			pb.pid, pb.epoch, pb.baseSeq = b.pid, b.epoch, seq
			seq += int32(pb.b.Count())
		}
		if err := p.build(pb); err != nil {
			return nil, err // not reached: the records were built once already
		}
	}
	return pieces, nil
}

// sendOn writes b, admitted on cn (counted unresolved there), as one produce request.
func (p *Producer) sendOn(b *pbatch, cn *conn) {
	// The whole frame is built before b is registered: once registered, a reply or a connection
	// failure (on the reader goroutine) may complete b and recycle it, so send must not read b after
	// that, except through take (which hands b back only if nobody completed it).
	flags, noReply := wire.Flags(0), p.opts.Durability == wire.DurabilityNone
	if noReply {
		flags = wire.FlagNoReply
	}
	corr := cn.nextCorr()
	data := b.data // read before b is registered
	req := wire.Produce{Durability: p.opts.Durability, Partition: b.partition, Topic: p.topicB}
	buf, start := cn.beginFrame(wire.OpProduce, flags, corr)
	buf = req.AppendHeader(buf)
	var err error
	if noReply {
		// Completed as soon as it is queued (below), so recycled at once: the batch is copied.
		err = cn.endFrame(append(buf, data...), start)
	} else {
		// Registered while the write buffer is locked: the request cannot leave (so no reply can
		// come) before this goroutine is done with b.
		if err := cn.registerAs(corr, b); err != nil {
			cn.abandonFrame(buf, start)
			b.complete(wire.Frame{}, err)
			return
		}
		// The batch is written from data (b's buffer), not copied: b is changed again (recycled
		// by finish, rebuilt by split) only after its answer, which the broker sends once it has
		// read the whole frame, or after cn failed, which waits for the write in progress and
		// drops what is queued before it completes b (conn.fail).
		err = cn.endFrameRef(buf, start, data, wire.OpProduce, flags, corr)
	}
	if err != nil {
		if noReply || cn.take(corr) != nil {
			p.finish(b, -1, err, true)
		}
		return
	}
	if noReply {
		p.finish(b, -1, nil, true)
	}
}

// admit decides whether b may go out on cn now (the order rule at Producer). It counts b as
// unresolved on cn and reports true; or it puts b back into retry, in seq order, and reports false.
// A batch put back because a failed connection still has unresolved batches waits for the last of
// them to be resolved (which wakes the sender); one put back behind a lower seq waiting in retry is
// taken again at once, after it. Called by the sender (the holder of p.sending) only.
func (p *Producer) admit(b *pbatch, cn *conn) bool {
	p.mu.Lock()
	older := p.unresolved > 0 && p.sentOn != cn
	behind := len(p.retry) > 0 && before(p.retry[0], b)
	if !older && !behind {
		p.sentOn = cn
		p.unresolved++
		b.counted = true
		p.mu.Unlock()
		return true
	}
	p.inflight--
	p.unholdLocked(b)
	p.retryLocked(b)
	p.mu.Unlock()
	if !older {
		p.poke()
	}
	return false
}

// before reports whether x was sealed before y, or is a piece of the same batch cut from records
// before y's.
func before(x, y *pbatch) bool {
	return x.seq < y.seq || x.seq == y.seq && x.sub < y.sub
}

// retryLocked files b in retry by (seq, sub).
func (p *Producer) retryLocked(b *pbatch) {
	i, _ := slices.BinarySearchFunc(p.retry, b, func(x, y *pbatch) int {
		return cmp.Or(cmp.Compare(x.seq, y.seq), cmp.Compare(x.sub, y.sub))
	})
	p.retry = slices.Insert(p.retry, i, b)
}

// unholdLocked lets the sender carry on if b is the careful batch it was holding for.
func (p *Producer) unholdLocked(b *pbatch) {
	if p.holding == b {
		p.holding = nil
	}
}

// resolveLocked notes that b, if it was handed to a connection, is answered, failed or back in
// retry.
func (p *Producer) resolveLocked(b *pbatch) {
	if b.counted {
		b.counted = false
		p.unresolved--
	}
}

// stamp gives b the producer's identity and the next sequence of its partition. Sequences are
// assigned at the first send, in send order, which is the order the broker must see them in; a
// resend keeps them. Called by the sender (the holder of p.sending) only.
func (p *Producer) stamp(b *pbatch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pid == 0 {
		var id [8]byte
		_, _ = rand.Read(id[:])
		p.pid = int64(binary.BigEndian.Uint64(id[:]) >> 1) // non-negative: -1 means "not idempotent"
		p.seqs = make([]int32, p.nparts)
	}
	b.b.SetProducer(p.pid, p.epoch, p.seqs[b.partition])
	b.pid, b.epoch, b.baseSeq = p.pid, p.epoch, p.seqs[b.partition]
	p.seqs[b.partition] += int32(b.b.Count())
}

// complete is the answer to a batch's produce request (replyHandler).
func (b *pbatch) complete(f wire.Frame, err error) {
	p := b.p
	if err == nil {
		var r wire.ProduceReply
		if err = r.Decode(f.Body); err == nil {
			p.finish(b, r.BaseOffset, nil, true)
			return
		}
		err = fmt.Errorf("client: produce reply: %w", err)
	}
	// A broker that is stopping refuses a produce with CodeShuttingDown before storing anything:
	// resending it on the next connection cannot store it twice, so it does not count as a retry.
	refused := errors.Is(err, wire.CodeShuttingDown)
	if errors.Is(err, wire.CodeBatchTooLarge) && b.b.Count() > 1 && !p.stopped.Load() {
		// Refused whole, nothing stored (a broker that announced no limit, or a lower one than the
		// batch was cut for): the sender splits it in halves and sends them in its place, as Kafka's
		// producer splits a batch refused with MESSAGE_TOO_LARGE. Batches sent after it on the same
		// connection were not held back: the broker may store them before the halves (or, for an
		// idempotent producer, refuse them as out of order). Sizing batches under the limit the
		// broker announces keeps this path for brokers that announce none.
		p.mu.Lock()
		b.tooLarge = err
		if half := b.b.Size() / 2; p.learned == 0 || half < p.learned {
			p.learned = max(half, wire.BatchHeaderSize+16)
		}
		p.inflight--
		p.unholdLocked(b)
		p.resolveLocked(b)
		p.retryLocked(b)
		p.mu.Unlock()
		p.poke()
		return
	}
	if (refused || errors.Is(err, ErrConnectionLost) && !errors.Is(err, ErrClosed) && b.attempts < p.opts.Retries) && !p.stopped.Load() {
		if !refused {
			b.attempts++
		}
		p.mu.Lock()
		if refused && b.counted {
			b.avoid = p.sentOn // every counted batch is on sentOn
		}
		p.inflight--
		p.unholdLocked(b)
		p.resolveLocked(b)
		p.retryLocked(b)
		p.mu.Unlock()
		p.poke()
		return
	}
	if p.opts.Idempotent && b.attempts > 0 && errors.Is(err, wire.CodeDuplicateSequence) {
		// A resend of a batch the broker stored so long ago that it no longer remembers the
		// offsets (more batches in flight than it keeps per producer): the records are stored,
		// once, at offsets the answer does not say.
		p.finish(b, -1, nil, true)
		return
	}
	p.finish(b, -1, err, true)
}

// finish reports every record of b and recycles it. base is the first record's offset, or -1.
func (p *Producer) finish(b *pbatch, base int64, err error, inflight bool) {
	for i, c := range b.done {
		r := Result{Partition: b.partition, Offset: -1, Err: err}
		if err == nil && base >= 0 {
			r.Offset = base + int64(i)
		}
		if c.fn != nil {
			c.fn(r)
		}
		if c.fut != nil {
			c.fut.res = r
			c.fut.ch <- struct{}{}
		}
		b.done[i] = completion{}
	}
	p.mu.Lock()
	if err != nil && p.opts.Idempotent && b.data != nil && b.epoch == p.epoch {
		// A batch given up on leaves a gap in its partition's sequence: start a new session (epoch)
		// so the batches after it are not refused as out of order. Past the last epoch, a new
		// producer id (chosen at the next stamp) starts over: an (id, epoch, sequence) never names
		// two different batches.
		if p.epoch == math.MaxInt16 {
			p.pid, p.epoch = 0, 0
		} else {
			p.epoch++
		}
		clear(p.seqs)
	}
	if inflight {
		p.inflight--
	}
	p.unholdLocked(b)
	p.resolveLocked(b)
	p.buffered -= b.bytes
	p.outstanding -= len(b.done)
	if p.space != nil {
		close(p.space)
		p.space = nil
	}
	if p.outstanding == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
	b.b.Reset()
	b.done = b.done[:0]
	b.bytes, b.urgent, b.data, b.attempts, b.seq, b.sub, b.span = 0, false, nil, 0, 0, 0, 0
	b.avoid, b.tooLarge, b.careful = nil, nil, false
	p.free = append(p.free, b)
	// The freed slot matters only to a batch waiting for one (an open batch seals when a slot is
	// free): with none, waking run would only have it race the next Produce for p.sending.
	wake := p.nopen > 0 || len(p.ready) > 0 || len(p.retry) > 0
	p.mu.Unlock()
	if wake {
		p.poke()
	}
}

// Flush sends every buffered record without lingering and waits until all records produced before
// it returns have completed (successfully or not), or ctx ends. Its only error is ctx's: records'
// failures are reported to their own callbacks and Futures.
func (p *Producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	if p.outstanding == 0 {
		p.mu.Unlock()
		return nil
	}
	p.flushing++
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	idle := p.idle
	p.mu.Unlock()
	p.kick(true)
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.mu.Lock()
	p.flushing--
	p.mu.Unlock()
	return err
}

// Close refuses new records, sends everything buffered and waits for it to complete. When ctx ends
// first, the records still waiting fail with ErrClosed and Close returns ctx's error; requests already
// on the wire complete when their answer arrives.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.Flush(ctx)
	p.stopped.Store(true)
	p.sendCancel()
	close(p.stop)
	<-p.done
	// Fail what the sender never took (only when ctx ended).
	p.mu.Lock()
	var left []*pbatch
	for _, b := range p.open {
		if b != nil {
			left = append(left, b)
		}
	}
	clear(p.open)
	p.nopen = 0
	left = append(left, p.ready...)
	left = append(left, p.retry...)
	p.ready, p.retry = nil, nil
	p.mu.Unlock()
	for _, b := range left {
		p.finish(b, -1, ErrClosed, false)
	}
	return err
}
