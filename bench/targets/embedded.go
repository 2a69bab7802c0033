package targets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sluicemq/sluice/bench"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// Embedded is the in-process target: the engine on a temporary data directory, no socket.
type Embedded struct {
	opts Options

	// Set by Open, read-only afterwards.
	cfg        bench.Config
	durability wire.Durability
	dir        string
	eng        *engine.Engine
	topic      string
	gate       *durableGate // nil unless durability is fsync
	wallMs     int64        // wall clock (ms since the epoch) at bench.Now() monoNs: records' timestamps
	monoNs     int64
	producers  []*embeddedProducer
	ctx        context.Context
	cancel     context.CancelFunc

	wg   sync.WaitGroup // consumer goroutines and linger flushers
	errs errList
}

// NewEmbedded returns an unopened embedded target.
func NewEmbedded(opts Options) *Embedded { return &Embedded{opts: opts.withDefaults()} }

// Name implements bench.Target: "embedded", or "embedded-spin" with Options.SpinConsumer.
func (t *Embedded) Name() string {
	if t.opts.SpinConsumer {
		return EmbeddedName + "-spin"
	}
	return EmbeddedName
}

// Open implements bench.Target: a fresh engine and a topic with cfg.Partitions partitions.
func (t *Embedded) Open(_ context.Context, cfg bench.Config) error {
	t.cfg = cfg.WithDefaults()
	var err error
	if t.durability, err = parseDurability(t.cfg.Durability); err != nil {
		return err
	}
	if err := checkSplit(t.cfg); err != nil {
		return err
	}
	if t.dir, t.eng, err = openEngine(t.opts, t.cfg, "embedded", 0); err != nil {
		return err
	}
	t.topic = topicName()
	if _, err := t.eng.CreateTopic(wire.TopicConfig{Name: t.topic, Partitions: uint32(t.cfg.Partitions)}); err != nil {
		closeEngine(t.eng)
		os.RemoveAll(t.dir)
		return fmt.Errorf("targets: create topic: %w", err)
	}
	if t.durability == wire.DurabilityFsync {
		// Producers append at written and the partitions' sync watcher acknowledges: see publishLocked.
		t.gate = newDurableGate(t.cfg.Partitions)
		top := t.eng.TopicByName(t.topic)
		for i := range t.cfg.Partitions {
			top.Partition(int32(i)).Watch(syncWatcher{t.gate})
		}
	}
	t.wallMs, t.monoNs = time.Now().UnixMilli(), bench.Now()
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.producers = make([]*embeddedProducer, t.cfg.Producers)
	for i := range t.producers {
		if t.producers[i], err = newEmbeddedProducer(t, i); err != nil {
			t.Close()
			return err
		}
	}
	return nil
}

// Producer implements bench.Target.
func (t *Embedded) Producer(i int) bench.Producer { return t.producers[i] }

// Consume implements bench.Target: one local subscription, owned by one goroutine.
func (t *Embedded) Consume(i int, deliver func(payload []byte)) error {
	part, ok := consumerPartition(i, t.cfg)
	if !ok {
		return nil // more consumers than partitions: this one has nothing to read
	}
	l, err := t.eng.SubscribeLocalWith(wire.Subscribe{Topic: t.topic, Partition: part, Start: wire.StartEarliest},
		engine.LocalOptions{Spin: t.opts.SpinConsumer})
	if err != nil {
		return fmt.Errorf("targets: subscribe: %w", err)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer l.Close() // owner goroutine only
		if err := t.consume(l, deliver); err != nil && t.ctx.Err() == nil {
			t.errs.add(fmt.Errorf("targets: embedded consumer %d: %w", i, err))
		}
	}()
	return nil
}

// consume hands every record to deliver until the target closes, with the Local's record iterator
// (which skips what a delivery's first batch holds before the cursor's position). Payloads are
// slices of the segment mapping, valid until the next NextRecord. A spinning Local
// (Options.SpinConsumer) polls in NextRecord and never parks.
func (t *Embedded) consume(l *engine.Local, deliver func([]byte)) error {
	for {
		r, err := l.NextRecord(t.ctx)
		if err != nil {
			return err
		}
		if t.gate != nil && !t.gate.wait(r.Partition, r.Offset) {
			return nil // closing
		}
		deliver(r.Value)
	}
}

// Close implements bench.Target: it stops the consumers and flushers, then the engine, and removes the
// data directory.
func (t *Embedded) Close() error {
	if t.eng == nil {
		return nil
	}
	if t.cancel != nil {
		t.cancel()
	}
	if t.gate != nil {
		t.gate.close()
	}
	for _, p := range t.producers {
		if p != nil {
			p.stopFlusher()
		}
	}
	t.wg.Wait()
	for _, p := range t.producers {
		if p != nil && p.err != nil && !errors.Is(p.err, context.Canceled) {
			t.errs.add(fmt.Errorf("targets: embedded producer %d: %w", p.id, p.err))
		}
	}
	if err := closeEngine(t.eng); err != nil {
		t.errs.add(fmt.Errorf("targets: close engine: %w", err))
	}
	t.eng = nil
	if err := os.RemoveAll(t.dir); err != nil {
		t.errs.add(err)
	}
	return t.errs.join()
}

// syncWatcher raises the gate as a partition's synced offset advances. The engine calls it on the
// partition's flusher goroutine after each fdatasync; advance does not block.
type syncWatcher struct{ g *durableGate }

func (w syncWatcher) Synced(p *engine.Partition, next int64) { w.g.advance(p.ID(), next) }

// embeddedProducer builds one batch per partition with a reused builder and publishes it in-process
// with a Publisher bound to the partition (no topic lookup per batch).
//
// With Linger == 0 only the harness's goroutine uses it and mu is never contended. With Linger > 0 a
// flusher goroutine shares it: mu guards every field below it.
type embeddedProducer struct {
	t      *Embedded
	id     int
	linger int64         // ns; 0: no linger
	stop   chan struct{} // closed once by stopFlusher; nil without linger
	once   sync.Once

	mu       sync.Mutex
	builders []*wire.BatchBuilder // per partition; a builder's buffer grows to BatchBytes once, then is reused
	pubs     []*engine.Publisher  // per partition; at fsync they publish at written (see publishLocked)
	opened   []int64              // per partition: bench.Now() of the batch's first record
	sticky   int32                // the partition keyless records go to; moves on after each of its batches
	err      error                // the first publish error; every later Send returns it
}

func newEmbeddedProducer(t *Embedded, id int) (*embeddedProducer, error) {
	p := &embeddedProducer{
		t: t, id: id, linger: int64(t.cfg.Linger),
		builders: make([]*wire.BatchBuilder, t.cfg.Partitions),
		pubs:     make([]*engine.Publisher, t.cfg.Partitions),
		opened:   make([]int64, t.cfg.Partitions),
		sticky:   int32(id % t.cfg.Partitions),
	}
	d := t.durability
	if d == wire.DurabilityFsync {
		d = wire.DurabilityWritten
	}
	for i := range p.builders {
		p.builders[i] = wire.NewBatchBuilder(t.cfg.BatchBytes)
		var err error
		if p.pubs[i], err = t.eng.Publisher(t.topic, int32(i), d); err != nil {
			return nil, fmt.Errorf("targets: publisher: %w", err)
		}
	}
	if p.linger > 0 {
		p.stop = make(chan struct{})
		t.wg.Add(1)
		go p.flusher()
	}
	return p, nil
}

// Send implements bench.Producer: append to the partition's batch, publishing it first when the record
// would overflow BatchBytes, and after it when the batch is Linger old.
func (p *embeddedProducer) Send(key, payload []byte) error {
	now := bench.Now()
	ts := p.t.wallMs + (now-p.t.monoNs)/1e6 // a second clock read per message would cost as much as the append
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	part := p.sticky
	if key != nil {
		part = int32(fnv1a(key) % uint32(len(p.builders)))
	}
	b := p.builders[part]
	if n := b.Count(); n > 0 && b.Size()+wire.RecordSize(int32(n), 0, key, payload, nil) > p.t.cfg.BatchBytes {
		if err := p.publishLocked(part); err != nil {
			return err
		}
	}
	if b.Count() == 0 {
		p.opened[part] = now
	}
	b.Append(key, payload, nil, ts)
	if p.linger > 0 && now-p.opened[part] >= p.linger {
		return p.publishLocked(part)
	}
	return nil
}

// Flush implements bench.Producer: publish every partial batch.
func (p *embeddedProducer) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flushLocked(-1)
}

// flushLocked publishes the batches whose first record is older than age ns (age < 0: all of them).
func (p *embeddedProducer) flushLocked(age int64) error {
	if p.err != nil {
		return p.err
	}
	now := bench.Now()
	for part, b := range p.builders {
		if b.Count() > 0 && (age < 0 || now-p.opened[part] >= age) {
			if err := p.publishLocked(int32(part)); err != nil {
				return err
			}
		}
	}
	return nil
}

// publishLocked publishes partition part's batch and empties the builder.
//
// At fsync it publishes at written, which returns once the batch is in the mapping, requests a sync,
// and leaves the acknowledgement to the partition's sync watcher (syncWatcher), which raises the consumers' gate when
// the group commit's fdatasync covers the batch. The producer keeps appending meanwhile, as a TCP
// producer with requests in flight does, so one group commit covers every batch appended while the
// previous one ran. Publish at fsync would hold each producer for a whole group commit per batch and
// measure that queue instead.
func (p *embeddedProducer) publishLocked(part int32) error {
	b := p.builders[part]
	batch, err := b.Build()
	if err == nil {
		_, _, err = p.pubs[part].Publish(p.t.ctx, batch)
		if err == nil && p.t.durability == wire.DurabilityFsync {
			p.pubs[part].Partition().RequestSync() // as the server does for an fsync produce
		}
	}
	b.Reset()
	if part == p.sticky {
		p.sticky = (p.sticky + 1) % int32(len(p.builders))
	}
	if err != nil {
		p.err = err
	}
	return err
}

// flusher publishes lingering batches while the harness's goroutine sleeps between sends. It ticks at
// half the linger (at least 100µs): a batch leaves between Linger and 1.5 Linger after its first record.
func (p *embeddedProducer) flusher() {
	defer p.t.wg.Done()
	tick := time.NewTicker(max(time.Duration(p.linger)/2, 100*time.Microsecond))
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		p.mu.Lock()
		_ = p.flushLocked(p.linger) // an error is kept in p.err for Send and Close
		p.mu.Unlock()
	}
}

func (p *embeddedProducer) stopFlusher() {
	if p.stop != nil {
		p.once.Do(func() { close(p.stop) })
	}
}
