// Package engine is the broker's core: topics and their partitions, the produce path, subscriptions
// and their delivery cursors, consumer groups with durable offsets, and work queues. It knows no
// sockets. The network layer (engine/server) and the embedded API (Engine.Publish, Engine.Subscribe)
// are two thin faces over it.
//
// Concurrency: the hot paths take no mutex. Topic lookup reads a copy-on-write map through an atomic
// pointer; appends claim space in the partition log without a lock; a partition's consumers are a
// copy-on-write slice. Mutexes guard only admin changes (topics, subscriptions joining and leaving,
// group membership), which are rare.
package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/wire"
)

// Engine is an open broker core over one data directory.
type Engine struct {
	opts Options
	log  *slog.Logger

	// topics is the copy-on-write topic map: readers Load it without locking; writers hold adminMu,
	// copy, modify and Store.
	topics  atomic.Pointer[map[string]*Topic]
	adminMu sync.Mutex

	groups  *groupTable
	queues  *queueTable
	offsets *offsetStore
	metrics Metrics

	closed atomic.Bool
}

// Open opens (or creates) the engine's data directory and every topic in it, recovering each
// partition log.
func Open(opts Options) (*Engine, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "topics"), 0o755); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	// Memory-only topics keep nothing across restarts: start them empty.
	if err := os.RemoveAll(opts.MemoryDir); err != nil {
		return nil, fmt.Errorf("engine: memory dir: %w", err)
	}
	e := &Engine{opts: opts, log: opts.Logger}
	empty := map[string]*Topic{}
	e.topics.Store(&empty)
	var err error
	if e.offsets, err = openOffsetStore(filepath.Join(opts.DataDir, "offsets"), e.log); err != nil {
		return nil, err
	}
	e.groups = newGroupTable(e)
	qs, restored, err := openQueueStore(filepath.Join(opts.DataDir, "offsets"), e.log)
	if err != nil {
		return nil, err
	}
	e.queues = newQueueTable(e, qs, restored)
	e.groups.startExpirer() // after e.queues: it reads their members
	if err := e.loadTopics(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Options returns the engine's options with defaults filled in.
func (e *Engine) Options() Options { return e.opts }

// Close stops every partition after a final sync and persists offsets. It is safe to call twice.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Before adminMu: the janitor may be creating a dead-letter topic, which takes it.
	errs := []error{e.queues.close()} // commits the queues' floors and settlement state
	e.adminMu.Lock()
	defer e.adminMu.Unlock()
	var parts []*Partition // every partition of every topic, closed several at once
	for _, t := range *e.topics.Load() {
		parts = append(parts, t.parts...)
	}
	errs = append(errs, closePartitions(parts))
	e.groups.close()
	errs = append(errs, e.offsets.Close())
	errs = append(errs, os.RemoveAll(e.opts.MemoryDir))
	return errors.Join(errs...)
}

// Topic returns the topic named name, or nil. It takes no lock and does not allocate.
func (e *Engine) Topic(name []byte) *Topic {
	return (*e.topics.Load())[string(name)]
}

// AutoCreate returns the topic named name, creating it with the default partition count when the
// engine auto-creates topics; otherwise it fails with CodeUnknownTopic.
func (e *Engine) AutoCreate(name string) (*Topic, error) {
	if t := e.TopicByName(name); t != nil {
		return t, nil
	}
	if !e.opts.AutoCreateTopics {
		return nil, &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: name}
	}
	t, err := e.CreateTopic(wire.TopicConfig{Name: name})
	if errors.Is(err, wire.CodeTopicExists) {
		return e.TopicByName(name), nil
	}
	return t, err
}

// TopicByName is Topic for a string name.
func (e *Engine) TopicByName(name string) *Topic {
	return (*e.topics.Load())[name]
}

// Topics lists every topic's configuration, sorted by name.
func (e *Engine) Topics() []wire.TopicConfig {
	m := *e.topics.Load()
	out := make([]wire.TopicConfig, 0, len(m))
	for _, t := range m {
		out = append(out, t.cfg)
	}
	slices.SortFunc(out, func(a, b wire.TopicConfig) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// CreateTopic creates a topic. Partitions 0 means the default count.
func (e *Engine) CreateTopic(cfg wire.TopicConfig) (*Topic, error) {
	if e.closed.Load() {
		return nil, wire.CodeShuttingDown
	}
	if err := validTopicName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = uint32(e.opts.DefaultPartitions)
	}
	if cfg.Partitions > maxPartitions {
		return nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("%d partitions, limit %d", cfg.Partitions, maxPartitions)}
	}
	if cfg.RetentionBytes < 0 || cfg.RetentionMs < 0 || cfg.SegmentBytes < 0 {
		return nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "negative retention or segment size"}
	}
	if cfg.RetentionBytes == 0 {
		cfg.RetentionBytes = e.opts.RetentionBytes
	}
	if cfg.RetentionBytes == 0 && cfg.Flags&wire.TopicMemory != 0 {
		cfg.RetentionBytes = 8 * e.opts.MemorySegmentBytes // memory topics hold RAM: bound them by default
	}
	if cfg.RetentionMs == 0 {
		cfg.RetentionMs = e.opts.RetentionAge.Milliseconds()
	}
	if cfg.SegmentBytes == 0 {
		cfg.SegmentBytes = e.opts.SegmentBytes
	}
	e.adminMu.Lock()
	defer e.adminMu.Unlock()
	if _, ok := (*e.topics.Load())[cfg.Name]; ok {
		return nil, &wire.ProtocolError{Code: wire.CodeTopicExists, Message: cfg.Name}
	}
	dir := e.topicDir(cfg.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: create topic %s: %w", cfg.Name, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "topic.json"), mustJSON(cfg)); err != nil {
		return nil, fmt.Errorf("engine: create topic %s: %w", cfg.Name, err)
	}
	t, err := openTopic(e, cfg, dir)
	if err != nil {
		return nil, err
	}
	e.storeTopicLocked(cfg.Name, t)
	e.log.Info("topic created", "topic", cfg.Name, "partitions", cfg.Partitions, "memory", cfg.Flags&wire.TopicMemory != 0)
	return t, nil
}

// DeleteTopic closes a topic's subscriptions and partitions and removes its data.
func (e *Engine) DeleteTopic(name string) error {
	e.adminMu.Lock()
	defer e.adminMu.Unlock()
	t, ok := (*e.topics.Load())[name]
	if !ok {
		return &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: name}
	}
	e.storeTopicLocked(name, nil)
	t.deleted.Store(true)
	qerr := e.queues.dropTopic(name) // before the offsets: no queue floor of the topic outlives them
	e.offsets.DeleteTopic(name)
	err := errors.Join(qerr, t.close())
	dir := e.topicDir(name)
	gone := dir + ".deleted"
	if rerr := os.Rename(dir, gone); rerr == nil {
		_ = syncDir(filepath.Dir(dir))
		err = errors.Join(err, os.RemoveAll(gone))
	} else {
		err = errors.Join(err, os.RemoveAll(dir))
	}
	if t.Memory() {
		err = errors.Join(err, os.RemoveAll(filepath.Join(e.opts.MemoryDir, name)))
	}
	e.log.Info("topic deleted", "topic", name)
	return err
}

// storeTopicLocked publishes a new topic map with name set to t (nil removes it).
func (e *Engine) storeTopicLocked(name string, t *Topic) {
	old := *e.topics.Load()
	m := make(map[string]*Topic, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if t == nil {
		delete(m, name)
	} else {
		m[name] = t
	}
	e.topics.Store(&m)
}

func (e *Engine) topicDir(name string) string {
	return filepath.Join(e.opts.DataDir, "topics", name)
}

func (e *Engine) loadTopics() error {
	root := filepath.Join(e.opts.DataDir, "topics")
	ents, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.adminMu.Lock()
	defer e.adminMu.Unlock()
	for _, ent := range ents {
		name := ent.Name()
		if !ent.IsDir() {
			continue
		}
		if filepath.Ext(name) == ".deleted" {
			_ = os.RemoveAll(filepath.Join(root, name)) // a delete interrupted by a crash
			continue
		}
		raw, err := os.ReadFile(filepath.Join(root, name, "topic.json"))
		if errors.Is(err, os.ErrNotExist) {
			e.log.Warn("topic directory without topic.json: skipped", "dir", name)
			continue
		}
		if err != nil {
			return fmt.Errorf("engine: topic %s: %w", name, err)
		}
		var cfg wire.TopicConfig
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return fmt.Errorf("engine: topic %s: topic.json: %w", name, err)
		}
		t, err := openTopic(e, cfg, filepath.Join(root, name))
		if err != nil {
			return err
		}
		e.storeTopicLocked(name, t)
	}
	return nil
}

// validTopicName accepts Kafka's topic alphabet, up to 249 bytes.
func validTopicName(name string) error {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "topic name must be 1..249 bytes"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "topic name " + strconv.Quote(name) + ": only [A-Za-z0-9._-]"}
		}
	}
	if filepath.Ext(name) == ".deleted" {
		return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "topic name may not end in .deleted"}
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only plain structs are marshalled here
	}
	return b
}

// writeFileAtomic replaces path with data: temp file, fsync, rename, fsync the directory.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
