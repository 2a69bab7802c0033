package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// noTopicLeft fails the test if anything of topic name is left in the data or memory directory.
func noTopicLeft(t *testing.T, o Options, name string) {
	t.Helper()
	for _, dir := range []string{filepath.Join(o.DataDir, "topics", name), filepath.Join(o.MemoryDir, name)} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			ents, _ := os.ReadDir(dir)
			t.Errorf("%s left behind (%v, %d entries)", dir, err, len(ents))
		}
	}
}

// A create the logs would refuse is refused before anything is written, and the engine opens again.
func TestCreateTopicRejectsBadSizesWholly(t *testing.T) {
	o := testOptions(t) // segments 1 MiB, batches up to 1 MiB, memory segments 8 MiB
	e := openEngine(t, o)
	for _, tc := range []struct {
		name string
		cfg  wire.TopicConfig
		want string // in the error message
	}{
		{"segment below the batch limit", wire.TopicConfig{SegmentBytes: 512 << 10}, "max batch bytes"},
		{"segment not page aligned", wire.TopicConfig{SegmentBytes: 5000}, "segment bytes 5000"},
		{"segment above 1 GiB", wire.TopicConfig{SegmentBytes: 2 << 30}, "segment bytes 2147483648"},
		{"memory segment below the batch limit", wire.TopicConfig{SegmentBytes: 4096, Flags: wire.TopicMemory}, "max batch bytes"},
		{"retention ms overflowing a duration", wire.TopicConfig{RetentionMs: 18446744073710}, "retention ms 18446744073710"},
		{"negative retention ms", wire.TopicConfig{RetentionMs: -1}, "retention ms -1"},
		{"negative retention bytes", wire.TopicConfig{RetentionBytes: -1}, "retention bytes -1"},
		{"negative segment", wire.TopicConfig{SegmentBytes: -4096}, "segment bytes -4096"},
		{"too many partitions", wire.TopicConfig{Partitions: maxPartitions + 1}, "partitions"},
	} {
		tc.cfg.Name = "orders"
		_, err := e.CreateTopic(tc.cfg)
		if !errors.Is(err, wire.CodeInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid request mentioning %q", tc.name, err, tc.want)
		}
		noTopicLeft(t, e.opts, "orders")
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "other", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	want := produce(t, e, "other", 2, 20, wire.DurabilityWritten)
	if ents, _ := os.ReadDir(filepath.Join(o.DataDir, "topics", "other")); len(ents) != 3 { // topic.json, 0, 1
		t.Errorf("a created topic's directory holds %d entries, want topic.json and 2 partitions", len(ents))
	}
	e.Close()

	e = openEngine(t, o)
	if f := e.FailedTopics(); len(f) != 0 {
		t.Fatalf("failed topics after a restart: %v", f)
	}
	if got := e.Topics(); len(got) != 1 || got[0].Name != "other" {
		t.Fatalf("topics after a restart: %+v", got)
	}
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "other", Partition: -1, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	consume(t, l, want, nil)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "orders", SegmentBytes: 2 << 20}); err != nil {
		t.Fatalf("a valid create of the rejected name: %v", err)
	}
}

// produceRecords publishes n records of about 100 bytes to partition 0 of topic, 10 a batch.
func produceRecords(t *testing.T, e *Engine, topic string, n int) {
	t.Helper()
	b := wire.NewBatchBuilder(4096)
	for i := 0; i < n; i += 10 {
		var recs []record
		for j := i; j < min(i+10, n); j++ {
			recs = append(recs, record{key: strconv.Itoa(j), value: strings.Repeat("v", 80)})
		}
		if _, _, err := e.Publish(context.Background(), topic, 0, buildBatch(t, b, recs), wire.DurabilityWritten); err != nil {
			t.Fatal(err)
		}
	}
}

// A topic that cannot be opened at start does not stop the engine: it is logged, listed as failed,
// answered with a clear error, and removable; the others are served. A directory without topic.json
// (a create interrupted by a crash) is removed.
func TestBadTopicOnDiskDoesNotStopOpen(t *testing.T) {
	o := testOptions(t)
	o.SegmentBytes, o.MaxBatchBytes = 64<<10, 64<<10
	e := openEngine(t, o)
	for _, name := range []string{"good", "aged"} {
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	want := produce(t, e, "good", 1, 30, wire.DurabilityWritten)
	produceRecords(t, e, "aged", 1500)
	e.Close()

	root := filepath.Join(o.DataDir, "topics")
	writeConfig := func(name string, raw []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name, "topic.json"), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// What earlier versions left: a rejected create's topic.json, and a retention that wraps.
	writeConfig("orders", mustJSON(wire.TopicConfig{Name: "orders", Partitions: 4, SegmentBytes: 32 << 10}))
	writeConfig("aged", mustJSON(wire.TopicConfig{Name: "aged", Partitions: 1, RetentionMs: 18446744073710, SegmentBytes: o.SegmentBytes}))
	writeConfig("broken", []byte("{not json"))
	writeConfig("renamed", mustJSON(wire.TopicConfig{Name: "other", Partitions: 1, SegmentBytes: o.SegmentBytes}))
	// Creates cut short by a crash: marked unfinished (with a partition made), or an empty directory.
	for _, p := range []string{filepath.Join(root, "halfmade", "0"), filepath.Join(root, "justmade")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "halfmade", ".creating"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A create killed while writing its creating mark: only the mark's temp file.
	if err := os.MkdirAll(filepath.Join(root, "markmade"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "markmade", ".creating"+disk.AtomicTempSuffix), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A create finished but for removing its mark: a topic.
	if err := os.WriteFile(filepath.Join(root, "good", ".creating"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A topic that lost its topic.json otherwise: not served, and not removed either.
	if err := os.MkdirAll(filepath.Join(root, "orphan", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	agedSegs, _ := filepath.Glob(filepath.Join(root, "aged", "0", "*.log"))

	e, err := Open(o)
	if err != nil {
		t.Fatalf("Open with bad topics on disk: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	var names []string
	for _, f := range e.FailedTopics() {
		names = append(names, f.Name)
		if f.Err == nil {
			t.Errorf("%s failed without a cause", f.Name)
		}
	}
	if strings.Join(names, ",") != "aged,broken,orders,orphan,renamed" {
		t.Fatalf("failed topics %v", names)
	}
	for _, name := range []string{"halfmade", "justmade", "markmade"} {
		if _, err := os.Stat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the directory of an unfinished create survives Open: %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "orphan", "0")); err != nil {
		t.Errorf("a directory without topic.json that is not an unfinished create was removed: %v", err)
	}
	if got := e.Topics(); len(got) != 1 || got[0].Name != "good" {
		t.Fatalf("served topics %+v", got)
	}
	if _, err := os.Stat(filepath.Join(root, "good", ".creating")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the creating mark of a finished create survives Open: %v", err)
	}
	// The good topic is whole.
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "good", Partition: -1, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	consume(t, l, want, nil)
	// The aged topic's records are all still on disk.
	if now, _ := filepath.Glob(filepath.Join(root, "aged", "0", "*.log")); len(agedSegs) < 2 || len(now) != len(agedSegs) {
		t.Fatalf("aged topic segments: %d before, %d after Open", len(agedSegs), len(now))
	}
	// A failed topic answers a clear error, and is not recreated over.
	b := wire.NewBatchBuilder(256)
	batch := buildBatch(t, b, []record{{key: "k", value: "v"}})
	if _, _, err := e.Publish(context.Background(), "orders", 0, batch, wire.DurabilityWritten); !errors.Is(err, wire.CodeStorageFailed) || !strings.Contains(err.Error(), "failed to open") {
		t.Fatalf("publish to a failed topic: %v", err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "orders", Partitions: 1}); !errors.Is(err, wire.CodeStorageFailed) {
		t.Fatalf("create over a failed topic: %v", err)
	}
	if _, err := e.SubscribeLocal(wire.Subscribe{Topic: "orders", Partition: -1, Start: wire.StartEarliest}); !errors.Is(err, wire.CodeStorageFailed) {
		t.Fatalf("subscribe to a failed topic: %v", err)
	}
	var m bytes.Buffer
	e.WriteMetrics(&m)
	if !strings.Contains(m.String(), "\nsluice_topics_failed 5\n") {
		t.Errorf("metrics do not count the failed topics:\n%s", m.String())
	}
	// Deleting a failed topic removes it; its name can then be created again.
	if err := e.DeleteTopic("orders"); err != nil {
		t.Fatal(err)
	}
	noTopicLeft(t, o, "orders")
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "orders", Partitions: 1}); err != nil {
		t.Fatalf("create after deleting the failed topic: %v", err)
	}
	if len(e.FailedTopics()) != 4 {
		t.Fatalf("failed topics after a delete: %v", e.FailedTopics())
	}
}

// faultFS fails the creation of files in the partition directory named failIn with err, and the
// fsync of a directory named syncDirIn with syncDirErr.
type faultFS struct {
	disk.OSFS
	failIn     string
	err        error
	hits       atomic.Int64
	syncDirIn  string
	syncDirErr atomic.Pointer[error]
}

func (fs *faultFS) SyncDir(dir string) error {
	if p := fs.syncDirErr.Load(); p != nil && filepath.Base(dir) == fs.syncDirIn {
		fs.hits.Add(1)
		return *p
	}
	return fs.OSFS.SyncDir(dir)
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (disk.File, error) {
	if flag&os.O_CREATE != 0 && filepath.Base(filepath.Dir(name)) == fs.failIn && fs.err != nil {
		fs.hits.Add(1)
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.err}
	}
	return fs.OSFS.OpenFile(name, flag, perm)
}

// A create that fails part way (the file limit, a full disk, at partition 2 of 4 or at topic.json)
// leaves nothing behind: no directory, no topic.json, nothing that a restart would load.
func TestCreateTopicFailingMidwayLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		failIn string // the directory whose file creation fails: partition 2, or the topic's (topic.json)
		err    error
		mem    bool
	}{
		{"file limit", "2", syscall.EMFILE, false},
		{"disk full", "2", syscall.ENOSPC, false},
		{"file limit, memory topic", "2", syscall.EMFILE, true},
		{"disk full writing topic.json", "orders", syscall.ENOSPC, false},
		{"disk full writing topic.json, memory topic", "orders", syscall.ENOSPC, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &faultFS{failIn: tc.failIn, err: tc.err}
			o := testOptions(t)
			o.FS = fs
			e := openEngine(t, o)
			cfg := wire.TopicConfig{Name: "orders", Partitions: 4}
			if tc.mem {
				cfg.Flags = wire.TopicMemory
			}
			_, err := e.CreateTopic(cfg)
			if err == nil || !errors.Is(err, tc.err) && !strings.Contains(err.Error(), tc.err.Error()) {
				t.Fatalf("create: %v, want %v", err, tc.err)
			}
			if fs.hits.Load() == 0 {
				t.Fatal("the fault was never hit")
			}
			if e.TopicByName("orders") != nil {
				t.Fatal("a failed create is served")
			}
			noTopicLeft(t, o, "orders")
			e.Close()

			fs.err = nil
			e = openEngine(t, o)
			if e.TopicByName("orders") != nil || len(e.FailedTopics()) != 0 {
				t.Fatalf("after a restart: topic %v, failed %v", e.TopicByName("orders"), e.FailedTopics())
			}
			if _, err := e.CreateTopic(cfg); err != nil {
				t.Fatalf("create once the fault is gone: %v", err)
			}
			if n := e.TopicByName("orders").Partitions(); n != 4 {
				t.Fatalf("%d partitions", n)
			}
		})
	}
}

// The longest retention allowed deletes nothing; 18446744073710 ms (which wrapped to under a
// millisecond as a time.Duration) is refused.
func TestRetentionMsRangeChecked(t *testing.T) {
	o := testOptions(t)
	o.SegmentBytes, o.MaxBatchBytes = 64<<10, 64<<10
	e := openEngine(t, o)
	_, err := e.CreateTopic(wire.TopicConfig{Name: "huge", Partitions: 1, RetentionMs: 18446744073710})
	if !errors.Is(err, wire.CodeInvalidRequest) || !strings.Contains(err.Error(), "retention ms") {
		t.Fatalf("retention-ms 18446744073710: %v", err)
	}
	noTopicLeft(t, o, "huge")
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "long", Partitions: 1, RetentionMs: wire.MaxRetentionMs}); err != nil {
		t.Fatal(err)
	}
	produceRecords(t, e, "long", 1500)
	p := e.TopicByName("long").Partition(0)
	if err := p.log.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if p.StartOffset() != 0 || p.NextOffset() != 1500 {
		t.Fatalf("after retention: offsets %d..%d, want 0..1500", p.StartOffset(), p.NextOffset())
	}
	if info := e.TopicByName("long").Info(); info.Partitions[0].Bytes < 64<<10 {
		t.Fatalf("the test needs more than one segment: %d bytes", info.Partitions[0].Bytes)
	}
}

func TestOptionsRangeChecked(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"segment not page aligned": func(o *Options) { o.SegmentBytes = 1<<20 + 1 },
		"segment above 1 GiB":      func(o *Options) { o.SegmentBytes = 2 << 30 },
		"memory segment too small": func(o *Options) { o.MemorySegmentBytes = 4096 },
		"retention age wraps":      func(o *Options) { o.RetentionAge = 1<<63 - 1 },
		"retention age sub-ms":     func(o *Options) { o.RetentionAge = 500_000 },
		"negative queue timeout":   func(o *Options) { o.QueueAckTimeout = -1 },
		"negative txn timeout":     func(o *Options) { o.TxnTimeout = -1 },
	} {
		o := testOptions(t)
		mod(&o)
		o.setDefaults()
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A create that runs into the real file limit (RLIMIT_NOFILE, lowered in a child process so the
// test's own process keeps its files) fails with EMFILE and leaves nothing behind; the engine opens
// again without the topic.
func TestCreateTopicAtTheFileLimit(t *testing.T) {
	const env = "SLUICE_TEST_FDLIMIT_DIR"
	if dir := os.Getenv(env); dir != "" {
		o := testOptions(t)
		o.DataDir, o.MemoryDir = dir, filepath.Join(dir, "mem")
		o.SegmentBytes, o.MaxBatchBytes = 64<<10, 64<<10
		e := openEngine(t, o)
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		lim.Cur = uint64(len(fds) + 32) // room for a few partitions, not 64
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		_, err = e.CreateTopic(wire.TopicConfig{Name: "wide", Partitions: 64})
		if !errors.Is(err, syscall.EMFILE) {
			t.Fatalf("create at the file limit: %v, want EMFILE", err)
		}
		noTopicLeft(t, o, "wide")
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCreateTopicAtTheFileLimit$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("--- PASS")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
	o := testOptions(t)
	o.DataDir, o.MemoryDir = dir, filepath.Join(dir, "mem")
	o.SegmentBytes, o.MaxBatchBytes = 64<<10, 64<<10
	e := openEngine(t, o)
	if e.TopicByName("wide") != nil || len(e.FailedTopics()) != 0 {
		t.Fatalf("after the failed create: topic %v, failed %v", e.TopicByName("wide"), e.FailedTopics())
	}
	noTopicLeft(t, o, "wide")
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "wide", Partitions: 64}); err != nil {
		t.Fatalf("the same create without the limit: %v", err)
	}
}

// A topic deletion whose directory fsync fails (the rename to NAME.deleted may not be durable) is
// reported, not swallowed; the topic is gone from the engine, and the next Open finishes the
// deletion.
func TestDeleteTopicReportsDirectoryFsyncError(t *testing.T) {
	fs := &faultFS{syncDirIn: "topics"}
	o := testOptions(t)
	o.FS = fs
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "orders", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	eio := error(syscall.EIO)
	fs.syncDirErr.Store(&eio)
	err := e.DeleteTopic("orders")
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("delete with a failing directory fsync: %v, want EIO", err)
	}
	if fs.hits.Load() == 0 {
		t.Fatal("the fault was never hit")
	}
	if e.TopicByName("orders") != nil {
		t.Fatal("a deleted topic is still served")
	}
	e.Close()
	fs.syncDirErr.Store(nil)
	e = openEngine(t, o)
	if e.TopicByName("orders") != nil || len(e.FailedTopics()) != 0 {
		t.Fatalf("after a restart: topic %v, failed %v", e.TopicByName("orders"), e.FailedTopics())
	}
	noTopicLeft(t, o, "orders")
	if _, err := os.Stat(filepath.Join(o.DataDir, "topics", "orders.deleted")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orders.deleted after a restart: %v", err)
	}
}
