package targets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/bench"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/wire"
)

// closeTimeout bounds each step of Close that talks to the broker.
const closeTimeout = 10 * time.Second

// Client is the target that speaks to a broker through the Go client: the tcp target (engine and server
// in-process on 127.0.0.1:0) or the addr target (a broker at Options.Addr).
type Client struct {
	opts     Options
	name     string
	inProc   bool // start engine and server in Open
	dialAddr string

	// Set by Open, read-only afterwards.
	cfg       bench.Config
	dir       string
	eng       *engine.Engine
	srv       *server.Server
	topic     string
	admin     *client.Client
	gate      *durableGate // nil unless durability is fsync
	producers []*clientProducer
	consumers []*client.Consumer
	clients   []*client.Client // every connection but admin's
	ctx       context.Context
	cancel    context.CancelFunc

	wg   sync.WaitGroup // consumer goroutines
	errs errList
}

// NewTCP returns an unopened tcp target: engine and server in-process, the client over loopback.
func NewTCP(opts Options) *Client {
	return &Client{opts: opts.withDefaults(), name: TCPName, inProc: true}
}

// NewAddr returns an unopened addr target: the client against the broker at opts.Addr.
func NewAddr(opts Options) *Client {
	o := opts.withDefaults()
	return &Client{opts: o, name: AddrName, dialAddr: o.Addr}
}

// Name implements bench.Target.
func (t *Client) Name() string { return t.name }

// Addr is the broker's address once Open has run.
func (t *Client) Addr() string { return t.dialAddr }

// Open implements bench.Target: start the broker (tcp), dial it and create a fresh topic.
func (t *Client) Open(ctx context.Context, cfg bench.Config) (err error) {
	t.cfg = cfg.WithDefaults()
	durability, err := parseDurability(t.cfg.Durability)
	if err != nil {
		return err
	}
	if err := checkSplit(t.cfg); err != nil {
		return err
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			_ = t.Close()
		}
	}()
	if t.inProc {
		if err := t.startBroker(); err != nil {
			return err
		}
	} else if t.dialAddr == "" {
		return fmt.Errorf("%w: the addr target needs a broker address", ErrConfig)
	}
	if t.admin, err = t.dial(ctx); err != nil {
		return err
	}
	t.topic = topicName()
	if err := t.admin.CreateTopic(ctx, client.TopicConfig{Name: t.topic, Partitions: uint32(t.cfg.Partitions)}); err != nil {
		t.topic = ""
		return fmt.Errorf("targets: %w", err)
	}
	if durability == wire.DurabilityFsync {
		t.gate = newDurableGate(t.cfg.Partitions)
	}
	linger := t.cfg.Linger
	if linger == 0 {
		linger = -1 // the client's "no linger"; its zero means its 5ms default
	}
	for i := range t.cfg.Producers {
		c, err := t.dial(ctx)
		if err != nil {
			return err
		}
		p := &clientProducer{t: t, id: i, linger: t.cfg.Linger > 0}
		p.onResult = p.result // one method value for every record: Produce's callback allocates nothing
		p.p, err = c.Producer(t.topic,
			client.WithDurability(durability),
			client.WithLinger(linger),
			client.WithMaxBatchBytes(t.cfg.BatchBytes),
			// Bound the records queued in the client to a few batches' worth, so a closed-loop run
			// measures the broker, not a 64 MiB queue in front of it.
			client.WithMaxBufferedBytes(max(32*t.cfg.BatchBytes, 1<<20)),
		)
		if err != nil {
			return fmt.Errorf("targets: producer: %w", err)
		}
		t.producers = append(t.producers, p)
	}
	return nil
}

// startBroker opens an engine on a temporary directory and serves it on 127.0.0.1:0.
func (t *Client) startBroker() error {
	var err error
	loops := t.opts.Loops
	if loops == 0 {
		loops = runtime.NumCPU() // server.Options' default
	}
	if t.dir, t.eng, err = openEngine(t.opts, t.cfg, "tcp", loops); err != nil {
		return err
	}
	t.srv, err = server.Start(server.Options{Addr: "127.0.0.1:0", Engine: t.eng, Loops: t.opts.Loops, Logger: t.opts.Logger})
	if err != nil {
		return fmt.Errorf("targets: start server: %w", err)
	}
	t.dialAddr = t.srv.Addr().String()
	return nil
}

func (t *Client) dial(ctx context.Context) (*client.Client, error) {
	opts := []client.Option{client.WithClientID("sluice-bench"), client.WithLogger(t.opts.Logger)}
	if t.opts.AuthToken != "" {
		opts = append(opts, client.WithAuthToken(t.opts.AuthToken))
	}
	if t.opts.Timeout > 0 {
		opts = append(opts, client.WithDialTimeout(t.opts.Timeout), client.WithRequestTimeout(t.opts.Timeout))
	}
	c, err := client.Dial(ctx, t.dialAddr, opts...)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err) // client.Dial names the address
	}
	if t.admin != nil {
		t.clients = append(t.clients, c)
	}
	return c, nil
}

// Producer implements bench.Target.
func (t *Client) Producer(i int) bench.Producer { return t.producers[i] }

// Consume implements bench.Target: a consumer on its own connection, read by one goroutine.
func (t *Client) Consume(i int, deliver func(payload []byte)) error {
	part, ok := consumerPartition(i, t.cfg)
	if !ok {
		return nil
	}
	c, err := t.dial(t.ctx)
	if err != nil {
		return err
	}
	opts := []client.ConsumerOption{
		client.WithStartEarliest(), // the topic is new: earliest is everything produced from now on
		// Room for several full batches in flight, so the broker never waits for a credit grant.
		client.WithCredit(max(4<<20, 8*t.cfg.BatchBytes)),
	}
	if part >= 0 {
		opts = append(opts, client.WithPartition(part))
	}
	cons, err := c.Subscribe(t.ctx, t.topic, opts...)
	if err != nil {
		return fmt.Errorf("targets: subscribe: %w", err)
	}
	t.consumers = append(t.consumers, cons)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			m, err := cons.Next(t.ctx)
			if err != nil {
				if t.ctx.Err() == nil {
					t.errs.add(fmt.Errorf("targets: %s consumer %d: %w", t.name, i, err))
				}
				return
			}
			if t.gate != nil && !t.gate.wait(m.Partition, m.Offset) {
				return // closing
			}
			deliver(m.Value)
		}
	}()
	return nil
}

// Close implements bench.Target: consumers stop first (no deliver runs after), then producers drain,
// the topic is deleted (addr) and everything in-process shuts down.
func (t *Client) Close() error {
	if t.cancel == nil {
		return nil
	}
	t.cancel()
	if t.gate != nil {
		t.gate.close()
	}
	t.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	for _, p := range t.producers {
		if err := p.p.Close(ctx); err != nil {
			t.errs.add(fmt.Errorf("targets: close producer %d: %w", p.id, err))
		}
		if err := p.err(); err != nil {
			t.errs.add(fmt.Errorf("targets: %s producer %d: %w", t.name, p.id, err))
		}
	}
	for _, c := range t.consumers {
		if err := c.Close(ctx); err != nil && !errors.Is(err, client.ErrClosed) {
			t.errs.add(fmt.Errorf("targets: close consumer: %w", err))
		}
	}
	for _, c := range t.clients {
		_ = c.Close()
	}
	if t.admin != nil {
		if t.topic != "" && !t.inProc {
			if err := t.admin.DeleteTopic(ctx, t.topic); err != nil {
				t.errs.add(fmt.Errorf("targets: %w", err))
			}
		}
		_ = t.admin.Close()
	}
	if t.srv != nil {
		if err := t.srv.Close(); err != nil {
			t.errs.add(fmt.Errorf("targets: close server: %w", err))
		}
	}
	if t.eng != nil {
		if err := closeEngine(t.eng); err != nil {
			t.errs.add(fmt.Errorf("targets: close engine: %w", err))
		}
	}
	if t.dir != "" {
		if err := os.RemoveAll(t.dir); err != nil {
			t.errs.add(err)
		}
	}
	t.cancel = nil
	return t.errs.join()
}

// clientProducer sends through a client.Producer. The client copies each record into its batch before
// Produce returns, so the harness's payload buffer is free again at once.
type clientProducer struct {
	t        *Client
	id       int
	p        *client.Producer
	linger   bool                // Config.Linger > 0: Flush waits for the client's batches
	onResult func(client.Result) // p.result, made once
	failed   atomic.Pointer[error]
}

// Send implements bench.Producer.
func (p *clientProducer) Send(key, payload []byte) error {
	if e := p.failed.Load(); e != nil {
		return *e
	}
	return p.p.Produce(p.t.ctx, client.Record{Key: key, Value: payload}, p.onResult)
}

// Flush implements bench.Producer. Without linger the client sends every batch as soon as its sender
// takes it, so there is nothing to push. With linger the harness calls Flush once, when its schedule
// ends: send what lingers and wait for it.
func (p *clientProducer) Flush() error {
	if !p.linger {
		return nil
	}
	return p.p.Flush(p.t.ctx)
}

// result runs on a client goroutine for every record: it raises the fsync gate and keeps the first error.
func (p *clientProducer) result(r client.Result) {
	if r.Err != nil {
		if p.t.ctx.Err() == nil {
			err := r.Err
			p.failed.CompareAndSwap(nil, &err)
		}
		return
	}
	if p.t.gate != nil && r.Offset >= 0 {
		p.t.gate.advance(r.Partition, r.Offset+1)
	}
}

func (p *clientProducer) err() error {
	if e := p.failed.Load(); e != nil {
		return *e
	}
	return nil
}
