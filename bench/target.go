package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Target is a system under test. Producers send payloads to it; its consumers hand every payload back.
//
// The harness calls Open, then Consume for every consumer, then Producer for every producer, sends, waits
// for the consumers to drain and calls Close once.
type Target interface {
	// Name identifies the target in reports.
	Name() string
	// Open prepares the target for cfg.Producers producers and cfg.Consumers consumers. The target reads
	// the fields it understands (Partitions, Durability, BatchBytes, Linger) and ignores the rest.
	Open(ctx context.Context, cfg Config) error
	// Producer returns producer i (0 <= i < cfg.Producers). Producers are used from one goroutine each.
	Producer(i int) Producer
	// Consume starts consumer i (0 <= i < cfg.Consumers); deliver is called for every payload received,
	// always from the same goroutine for a given i. The payload slice is valid only during the call.
	Consume(i int, deliver func(payload []byte)) error
	// Close stops the target. When Close returns, no deliver call is running and none will start: the
	// harness reads the consumers' histograms right after.
	Close() error
}

// Producer sends payloads to a Target.
type Producer interface {
	// Send hands one message to the target. It may batch internally (linger) and may block for
	// backpressure; it must not retain key or payload after it returns.
	Send(key, payload []byte) error
	// Flush pushes out anything batched. With Config.Linger == 0 the harness calls Flush after every burst
	// of sends, before it sleeps; with Linger > 0 the producer flushes on its own timer and the harness
	// calls Flush only when its schedule ends.
	Flush() error
}

// Factory makes a fresh, unopened Target. The suite calls it once per run.
type Factory func() Target

// Registry maps target names to factories. The harness ships the floor and relay targets; the caller registers
// broker targets (embedded engine, TCP client) before running a suite.
type Registry struct {
	mu        sync.Mutex
	factories map[string]Factory // guarded by mu
}

// FloorName is the registry name of the harness's in-process hand-off target.
const FloorName = "floor"

// NewRegistry returns a registry that holds the floor target under [FloorName] and the loopback relay
// under [RelayName].
func NewRegistry() *Registry {
	r := &Registry{factories: make(map[string]Factory)}
	r.Register(FloorName, func() Target { return NewFloorTarget() })
	r.Register(RelayName, func() Target { return NewRelayTarget() })
	return r
}

// Register adds or replaces the factory for name.
func (r *Registry) Register(name string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.factories[name] = f
}

// New returns a fresh target made by the factory registered under name.
func (r *Registry) New(name string) (Target, error) {
	r.mu.Lock()
	f, ok := r.factories[name]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q (registered: %v)", ErrUnknownTarget, name, r.Names())
	}
	return f(), nil
}

// Names lists the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
