// Package engine is the broker's core: topics and their partitions, the produce path, subscriptions
// and their delivery cursors, consumer groups with durable offsets, and work queues. It knows no
// sockets. The network faces (engine/server, engine/kafka) and the embedded API are thin faces over
// it, on the same code paths.
//
// # Embedding
//
// A program that runs the broker in-process needs only these:
//
//   - Open, Options, Engine.Close; Engine.CreateTopic, DeleteTopic, Topics, FailedTopics;
//   - publishing: Engine.Publisher and Publisher (one topic-partition, bound once; Publish,
//     PublishRecord), or Engine.Publish (topic by name, partition picked per call);
//   - subscribing: Engine.SubscribeLocal / SubscribeLocalWith (LocalOptions) and Local: NextRecord,
//     PollRecord and Record record by record; Next, Poll and Delivery batch by batch; Commit,
//     Position; Ack and Nack for work queues; ErrSubscriptionClosed;
//   - groups and offsets: Engine.CommitOffset, CommittedOffset, ListGroups, DescribeGroup,
//     DeleteGroup; DeadLetterTopic and InboxPrefix name the topics work queues and request/reply use.
//
// What a Local hands out are views into the partition's mapping, valid until its next call (see
// Local). The examples (Example, ExamplePublisher, ExampleLocal_Ack, Example_requestReply,
// ExampleEngine_SubscribeLocal_filter) run as tests.
//
// # For network faces
//
// The rest of the exported surface is what a face that multiplexes many subscriptions on an event
// loop needs, and an embedding program does not: Engine.Subscribe with an Owner (whose Wake and
// Reassign the engine calls from any goroutine), Subscription and its Cursor (credit, Deliver with a
// DeliverFunc, Ready, ApplyAssignment, SyncSettlements), SyncWatcher with Partition.Watch, Engine.Topic,
// AutoCreate, CommitTopicOffset and Delivered, Topic.PickPartition, Partition.Append and RequestSync,
// Metrics and WriteMetrics. They stay exported because engine/server and engine/kafka are separate
// packages; an embedding program that uses them takes on the owner-goroutine rules their docs state.
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
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// Engine is an open broker core over one data directory.
type Engine struct {
	opts Options
	log  *slog.Logger

	// groupSources are the other faces' consumer groups (AddGroupSource), by registration.
	groupSrcMu   sync.Mutex
	groupSources map[int]GroupSource
	groupSrcNext int

	// topics is the copy-on-write topic map: readers Load it without locking; writers hold adminMu,
	// copy, modify and Store.
	topics  atomic.Pointer[map[string]*Topic]
	adminMu sync.Mutex

	// failed maps the topics found on disk at Open that could not be opened to the cause. They are
	// not served until DeleteTopic removes them. Copy-on-write like topics: read without a lock (a
	// produce to an unknown topic looks here from an event loop); written under adminMu by
	// loadTopics and DeleteTopic.
	failed atomic.Pointer[map[string]error]

	groups  *groupTable
	queues  *queueTable
	offsets *offsetStore
	txns    *txnCoordinator // open transactions and the transaction log (txn.go)
	metrics Metrics

	// patterns holds the live pattern subscriptions, told of topics created (pattern.go).
	patterns patternTable

	closed atomic.Bool
}

// Open opens (or creates) the engine's data directory and every topic in it, recovering each
// partition log. A topic that cannot be opened (an unreadable or invalid topic.json, a partition
// log that fails to open) does not fail Open: it is logged, listed by FailedTopics and not served.
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
	noFailed := map[string]error{}
	e.failed.Store(&noFailed)
	var err error
	if e.offsets, err = openOffsetStore(filepath.Join(opts.DataDir, "offsets"), opts.FS, e.log, opts.Clock); err != nil {
		return nil, err
	}
	e.groups = newGroupTable(e)
	qs, restored, err := openQueueStore(filepath.Join(opts.DataDir, "offsets"), opts.FS, e.log)
	if err != nil {
		return nil, err
	}
	e.queues = newQueueTable(e, qs, restored)
	e.groups.startExpirer() // after e.queues: it reads their members
	if err := e.loadTopics(); err != nil {
		e.Close()
		return nil, err
	}
	if e.txns, err = openTxns(e, filepath.Join(opts.DataDir, "offsets")); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Options returns the engine's options with defaults filled in.
func (e *Engine) Options() Options { return e.opts }

// Close stops every partition after a final sync and persists offsets. It is safe to call twice. It
// returns what failed on the way (a partition's final sync or close, the offset or queue state
// store's last write), joined; the engine is closed either way.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Before adminMu: the janitor may be creating a dead-letter topic, which takes it.
	errs := []error{e.queues.close()} // commits the queues' floors and settlement state
	if e.txns != nil {
		errs = append(errs, e.txns.close()) // open transactions stay open on disk: Open aborts them
	}
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
// engine auto-creates topics; otherwise it fails with CodeUnknownTopic. A topic that failed to open
// at start fails with CodeStorageFailed and the cause.
func (e *Engine) AutoCreate(name string) (*Topic, error) {
	if t := e.TopicByName(name); t != nil {
		return t, nil
	}
	if err := e.failedTopic(name); err != nil {
		return nil, err
	}
	if !e.opts.AutoCreateTopics || strings.HasPrefix(name, InboxPrefix) {
		// A reply inbox is created by its requester only: a reply to one already deleted must not
		// bring it back as an ordinary topic that nothing would ever delete.
		return nil, &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: name}
	}
	t, err := e.CreateTopic(wire.TopicConfig{Name: name})
	if errors.Is(err, wire.CodeTopicExists) {
		return e.TopicByName(name), nil
	}
	return t, err
}

// InboxPrefix starts the name of every reply inbox (client.Request): a memory-only topic that its
// creator's connection owns (engine/server deletes it after that connection is gone) and that is
// never auto-created.
const InboxPrefix = "_inbox."

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

// CreateTopic creates a topic. Partitions 0 means the default count; a zero retention or segment
// setting takes the engine's default. The whole configuration is checked before anything is written
// (a rejected one answers CodeInvalidRequest saying which setting), and the create is all or
// nothing: if opening a partition log or writing topic.json fails (a full disk, the file limit),
// everything it made is removed. topic.json is written last, so a crash mid-create leaves a
// directory marked unfinished, which Open removes. A name that failed to open at start answers
// CodeStorageFailed until it is deleted.
func (e *Engine) CreateTopic(cfg wire.TopicConfig) (*Topic, error) {
	if e.closed.Load() {
		return nil, wire.CodeShuttingDown
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = uint32(e.opts.DefaultPartitions)
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
	if err := e.checkTopicConfig(cfg); err != nil {
		return nil, err
	}
	e.adminMu.Lock()
	defer e.adminMu.Unlock()
	if _, ok := (*e.topics.Load())[cfg.Name]; ok {
		return nil, &wire.ProtocolError{Code: wire.CodeTopicExists, Message: cfg.Name}
	}
	if err := e.failedTopic(cfg.Name); err != nil {
		return nil, err
	}
	t, err := e.createTopicLocked(cfg)
	if err != nil {
		return nil, err
	}
	e.storeTopicLocked(cfg.Name, t)
	e.patterns.created(t) // after the store: a pattern subscribing meanwhile lists it, or hears of it
	e.log.Info("topic created", "topic", cfg.Name, "partitions", cfg.Partitions, "memory", cfg.Flags&wire.TopicMemory != 0)
	return t, nil
}

// createTopicLocked makes a checked topic, all or nothing, in this order (docs/architecture.md):
//
//  1. mkdir NAME, create NAME/.creating, fsync NAME and topics/: from here on a crash leaves a
//     directory that says it is an unfinished create;
//  2. open the partition logs (creating their directories and first segments);
//  3. write topic.json (temp file, fdatasync, rename, fsync NAME): the topic is complete;
//  4. remove .creating.
//
// On any failure it closes the logs it opened and removes everything it made.
func (e *Engine) createTopicLocked(cfg wire.TopicConfig) (*Topic, error) {
	root := filepath.Join(e.opts.DataDir, "topics")
	dir := e.topicDir(cfg.Name)
	fsys := e.opts.FS
	if err := os.Mkdir(dir, 0o755); errors.Is(err, fs.ErrExist) {
		// Not a topic (Open loaded or failed every directory there was): what a failed create's
		// clean-up left in this process's life. Remove it only if it says so.
		if !leftoverCreate(dir) {
			return nil, fmt.Errorf("engine: create topic %s: %s exists and is not a topic", cfg.Name, dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("engine: create topic %s: removing a leftover directory: %w", cfg.Name, err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("engine: create topic %s: %w", cfg.Name, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("engine: create topic %s: %w", cfg.Name, err)
	}
	parts := e.partitionsDir(cfg, dir)
	undo := func() {
		if err := os.RemoveAll(dir); err != nil {
			e.log.Error("removing a failed topic create", "topic", cfg.Name, "err", err)
		}
		if parts != dir {
			_ = os.RemoveAll(parts)
		}
		_ = syncDir(root)
	}
	fail := func(t *Topic, err error) (*Topic, error) {
		if t != nil {
			t.close()
		}
		undo()
		return nil, storageError(err)
	}
	wrap := func(err error) error { return fmt.Errorf("engine: create topic %s: %w", cfg.Name, err) }
	err := disk.WriteFileAtomic(fsys, filepath.Join(dir, creatingFile), nil, 0o644)
	if err == nil {
		err = fsys.SyncDir(root)
	}
	if err == nil && parts != dir {
		err = os.RemoveAll(parts) // a memory topic starts empty
	}
	if err != nil {
		return fail(nil, wrap(err))
	}
	t, err := openTopic(e, cfg, dir)
	if err != nil {
		return fail(nil, err)
	}
	if err := disk.WriteFileAtomic(fsys, filepath.Join(dir, topicFile), mustJSON(cfg), 0o644); err != nil {
		return fail(t, wrap(err))
	}
	if err := fsys.Remove(filepath.Join(dir, creatingFile)); err != nil {
		e.log.Warn("removing the creating mark; Open removes it", "topic", cfg.Name, "err", err)
	}
	return t, nil
}

// topicFile names a topic's configuration file in its directory. Its presence marks a complete
// topic: CreateTopic writes it last. creatingFile marks a topic directory whose create has not
// finished (written first, removed after topic.json).
const (
	topicFile    = "topic.json"
	creatingFile = ".creating"
)

// leftoverCreate reports whether dir, a topic directory without topic.json, is what an unfinished
// create left: it holds the creating mark, or nothing but the mark's temp file (a crash while
// disk.WriteFileAtomic was writing the mark, before its rename), or nothing at all. Anything else is
// not removed.
func leftoverCreate(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	if len(ents) == 0 || len(ents) == 1 && ents[0].Name() == creatingFile+disk.AtomicTempSuffix {
		return true
	}
	_, err = os.Stat(filepath.Join(dir, creatingFile))
	return err == nil
}

// checkTopicConfig checks a topic configuration with its defaults filled in, the way the partition
// logs will: a create checks it before writing anything, Open before opening a topic. It returns a
// *wire.ProtocolError with CodeInvalidRequest saying which setting is wrong.
func (e *Engine) checkTopicConfig(cfg wire.TopicConfig) error {
	bad := func(format string, args ...any) error {
		return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("topic %s: ", cfg.Name) + fmt.Sprintf(format, args...)}
	}
	if err := validTopicName(cfg.Name); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Partitions < 1 || cfg.Partitions > maxPartitions {
		return bad("%d partitions, want 1..%d", cfg.Partitions, maxPartitions)
	}
	seg, what := cfg.SegmentBytes, "segment bytes"
	if cfg.Flags&wire.TopicMemory != 0 && e.opts.MemorySegmentBytes < seg {
		seg, what = e.opts.MemorySegmentBytes, "memory segment bytes"
	}
	page := int64(os.Getpagesize())
	switch {
	case seg < int64(e.opts.MaxBatchBytes):
		return bad("%s %d below the broker's max batch bytes %d: a batch must fit in a segment", what, seg, e.opts.MaxBatchBytes)
	case seg > disk.MaxSegmentBytes:
		return bad("%s %d above %d (1 GiB)", what, seg, disk.MaxSegmentBytes)
	case seg%page != 0:
		return bad("%s %d not a multiple of the page size %d", what, seg, page)
	}
	// The rules above are the disk's; its own check is the backstop for any it adds.
	if err := e.logOptions(cfg, e.partitionsDir(cfg, e.topicDir(cfg.Name)), 0).Validate(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// FailedTopic is a topic found on disk at Open that could not be opened.
type FailedTopic struct {
	Name string
	Err  error // why: reading or checking topic.json, or opening a partition log
}

// FailedTopics lists, sorted by name, the topics that failed to open at Open. They are not served:
// produce, subscribe and CreateTopic of their names answer CodeStorageFailed with the cause.
// DeleteTopic removes one, data and all.
func (e *Engine) FailedTopics() []FailedTopic {
	failed := *e.failed.Load()
	out := make([]FailedTopic, 0, len(failed))
	for name, err := range failed {
		out = append(out, FailedTopic{Name: name, Err: err})
	}
	slices.SortFunc(out, func(a, b FailedTopic) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// failedTopic returns the error to answer for a topic that failed to open, or nil. It takes no lock.
func (e *Engine) failedTopic(name string) error {
	cause, ok := (*e.failed.Load())[name]
	if !ok {
		return nil
	}
	return &wire.ProtocolError{Code: wire.CodeStorageFailed,
		Message: fmt.Sprintf("topic %s failed to open at start and is not served (delete it to remove it): %v", name, cause)}
}

// DeleteTopic closes a topic's subscriptions and partitions and removes its data. A topic that
// failed to open at start is removed too. Errors: CodeUnknownTopic (a *wire.ProtocolError) for a
// topic that does not exist; otherwise the file-system errors of closing and removing it, joined.
func (e *Engine) DeleteTopic(name string) error {
	e.adminMu.Lock()
	defer e.adminMu.Unlock()
	t, ok := (*e.topics.Load())[name]
	if _, failed := (*e.failed.Load())[name]; !ok && failed {
		e.storeFailedLocked(name, nil)
		qerr := e.queues.dropTopic(name) // a queue's restored state of the topic goes with it
		e.offsets.DeleteTopic(name)
		err := errors.Join(qerr, e.removeTopicDir(name), os.RemoveAll(filepath.Join(e.opts.MemoryDir, name)))
		e.log.Info("failed topic deleted", "topic", name)
		return err
	}
	if !ok {
		return &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: name}
	}
	e.storeTopicLocked(name, nil)
	// Marked deleted before the offsets go: a commit for this incarnation checks the mark under the
	// offset store's lock (Engine.CommitTopicOffset), so none lands after DeleteTopic drops them.
	t.deleted.Store(true)
	qerr := e.queues.dropTopic(name) // before the offsets: no queue floor of the topic outlives them
	e.offsets.DeleteTopic(name)
	err := errors.Join(qerr, t.close())
	e.groups.topicDeleted(t)
	err = errors.Join(err, e.removeTopicDir(name))
	if t.Memory() {
		err = errors.Join(err, os.RemoveAll(filepath.Join(e.opts.MemoryDir, name)))
	}
	e.log.Info("topic deleted", "topic", name)
	return err
}

// removeTopicDir removes a topic's directory: renamed to NAME.deleted first (durably, through
// Options.FS), so that a crash mid-removal leaves a name Open finishes deleting, never a half topic.
// A failed directory fsync is returned, and NAME.deleted left for Open.
func (e *Engine) removeTopicDir(name string) error {
	dir := e.topicDir(name)
	gone := dir + ".deleted"
	if err := e.opts.FS.Rename(dir, gone); err == nil {
		if err := e.opts.FS.SyncDir(filepath.Dir(dir)); err != nil {
			// The rename may not be durable: leave NAME.deleted for Open to finish, and say so.
			return fmt.Errorf("engine: delete topic %s: fsync %s: %w", name, filepath.Dir(dir), err)
		}
		return os.RemoveAll(gone)
	}
	return os.RemoveAll(dir)
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

// storeFailedLocked publishes a new failed-topic map with name set to cause (nil removes it).
func (e *Engine) storeFailedLocked(name string, cause error) {
	m := maps.Clone(*e.failed.Load())
	if cause == nil {
		delete(m, name)
	} else {
		m[name] = cause
	}
	e.failed.Store(&m)
}

func (e *Engine) topicDir(name string) string {
	return filepath.Join(e.opts.DataDir, "topics", name)
}

// loadTopics opens every topic under DataDir/topics. It fails only when the directory cannot be
// listed: a topic that cannot be opened is logged, recorded in failed and skipped, and the rest are
// served. A directory without topic.json that holds the creating mark (or nothing) is a create cut
// short by a crash (CreateTopic writes topic.json last) and is removed; so is NAME.deleted, a delete
// interrupted by a crash. A directory without topic.json holding anything else is a failed topic.
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
		t, err := e.loadTopicLocked(root, name)
		if errors.Is(err, errIncomplete) {
			e.log.Warn("topic directory of a create cut short by a crash: removed", "dir", name)
			if rerr := os.RemoveAll(filepath.Join(root, name)); rerr != nil {
				e.log.Error("removing an incomplete topic directory", "dir", name, "err", rerr)
			}
			continue
		}
		if err != nil {
			e.log.Error("topic failed to open: not served", "topic", name, "err", err)
			e.storeFailedLocked(name, err)
			continue
		}
		e.storeTopicLocked(name, t)
	}
	return nil
}

// errIncomplete marks a topic directory that an unfinished create left (leftoverCreate).
var errIncomplete = errors.New("engine: topic directory of an unfinished create")

// loadTopicLocked reads, checks and opens the topic in root/name.
func (e *Engine) loadTopicLocked(root, name string) (*Topic, error) {
	dir := filepath.Join(root, name)
	raw, err := os.ReadFile(filepath.Join(dir, topicFile))
	if errors.Is(err, os.ErrNotExist) {
		if leftoverCreate(dir) {
			return nil, errIncomplete
		}
		return nil, fmt.Errorf("engine: topic %s: no %s, and not an unfinished create: left alone", name, topicFile)
	}
	if err != nil {
		return nil, fmt.Errorf("engine: topic %s: %w", name, err)
	}
	if rerr := os.Remove(filepath.Join(dir, creatingFile)); rerr == nil {
		e.log.Info("topic's create finished before a crash: creating mark removed", "topic", name)
	}
	var cfg wire.TopicConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("engine: topic %s: %s: %w", name, topicFile, err)
	}
	if cfg.Name != name {
		return nil, fmt.Errorf("engine: topic %s: %s names topic %q", name, topicFile, cfg.Name)
	}
	if err := e.checkTopicConfig(cfg); err != nil {
		return nil, fmt.Errorf("engine: topic %s: %s: %w", name, topicFile, err)
	}
	return openTopic(e, cfg, dir)
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
