package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// testClock is an injectable engine clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// commit commits one offset through the engine and waits until it is durable.
func commit(t *testing.T, e *Engine, group, topic string, part int32, off int64) {
	t.Helper()
	done := make(chan error, 1)
	e.CommitOffset(group, topic, part, off, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("commit %s: %v", group, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("commit %s not acknowledged in 10s", group)
	}
}

// deleteGroup deletes a group and waits for the outcome.
func deleteGroup(t *testing.T, e *Engine, group string) error {
	t.Helper()
	done := make(chan error, 1)
	e.DeleteGroup(group, func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("delete %s not acknowledged in 10s", group)
		return nil
	}
}

func metricsText(e *Engine) string {
	var b bytes.Buffer
	e.WriteMetrics(&b)
	return b.String()
}

// TestGroupOffsetsExpire: a group without members whose newest commit is older than
// OffsetsRetention loses its offsets and its lag series, for good (across a restart); a group
// committed recently, and an old group that still has a member, keep theirs.
func TestGroupOffsetsExpire(t *testing.T) {
	clock := &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	o := testOptions(t)
	o.Clock = clock.Now
	o.OffsetsRetention = time.Hour
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "x", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	commit(t, e, "old", "x", 0, 0)
	commit(t, e, "old", "x", 1, 0)
	commit(t, e, "member", "x", 0, 0)
	sub, err := e.SubscribeLocal(wire.Subscribe{Topic: "x", Partition: -1, Group: "member", Start: wire.StartCommitted})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(50 * time.Minute)
	commit(t, e, "old", "x", 1, 0) // refreshes old: its newest commit counts
	clock.Advance(20 * time.Minute)
	commit(t, e, "recent", "x", 0, 0)
	if gone := e.expireGroups(); len(gone) != 0 {
		t.Fatalf("expired %v at 70 min: old's newest commit is 20 min old", gone)
	}
	clock.Advance(45 * time.Minute)
	gone := e.expireGroups()
	if fmt.Sprint(gone) != "[old]" {
		t.Fatalf("expired %v, want [old] (old: 65 min; recent: 45 min; member: has a member)", gone)
	}
	if got := e.CommittedOffset("old", "x", 1); got != -1 {
		t.Fatalf("old's offset %d after expiry", got)
	}
	if m := metricsText(e); strings.Contains(m, `group="old"`) || !strings.Contains(m, `group="recent"`) {
		t.Fatalf("lag series after expiry:\n%s", m)
	}
	sub.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, o)
	if got := fmt.Sprint(e.ListGroups()); got != "[member recent]" {
		t.Fatalf("groups after restart %s, want [member recent]", got)
	}
	clock.Advance(2 * time.Hour) // member has no member now
	if gone := e.expireGroups(); fmt.Sprint(gone) != "[member recent]" {
		t.Fatalf("expired %v, want [member recent]", gone)
	}
}

// TestDeleteGroup: a group is deleted with its offsets (durably), refused while it has a member,
// and an unknown group is reported as such.
func TestDeleteGroup(t *testing.T) {
	o := testOptions(t)
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "x", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	fillRecords(t, e, "x", 6)
	commit(t, e, "a", "x", 0, 5)
	commit(t, e, "b", "x", 0, 6)
	sub, err := e.SubscribeLocal(wire.Subscribe{Topic: "x", Partition: -1, Group: "b", Start: wire.StartCommitted})
	if err != nil {
		t.Fatal(err)
	}
	if err := deleteGroup(t, e, "b"); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("delete of a group with a member: %v, want CodeInvalidRequest", err)
	}
	if err := deleteGroup(t, e, "nope"); !errors.Is(err, wire.CodeUnknownGroup) {
		t.Fatalf("delete of an unknown group: %v, want CodeUnknownGroup", err)
	}
	if err := deleteGroup(t, e, "a"); err != nil {
		t.Fatal(err)
	}
	sub.Close()
	if err := deleteGroup(t, e, "b"); err != nil {
		t.Fatalf("delete of b after its member left: %v", err)
	}
	if got := e.ListGroups(); len(got) != 0 {
		t.Fatalf("groups after delete: %v", got)
	}
	// Crash-like restart: the deletions must be in the log, not only in a snapshot written by Close.
	dir := filepath.Join(o.DataDir, "offsets")
	raw, err := os.ReadFile(filepath.Join(dir, offsetsLog))
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	crash := t.TempDir()
	if err := os.WriteFile(filepath.Join(crash, offsetsLog), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := openOffsetStore(crash, disk.OSFS{}, e.log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if keys := s.Keys(); len(keys) != 0 {
		t.Fatalf("offsets replayed from the log: %v, want none", keys)
	}
}

// TestOffsetsLogTornTail: a log cut anywhere in its last record, or with a damaged last record,
// recovers every earlier commit, truncates the rest, and takes new commits after it.
func TestOffsetsLogTornTail(t *testing.T) {
	src := t.TempDir()
	s, err := openOffsetStore(src, disk.OSFS{}, testOptions(t).Logger, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		done := make(chan error, 1)
		s.Commit(OffsetKey{Group: "g", Topic: "t", Partition: int32(i)}, int64(10+i), func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(src, offsetsLog))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	recLen := len(raw) / 3
	if recLen*3 != len(raw) {
		t.Fatalf("log of %d bytes for 3 equal records", len(raw))
	}
	damaged := bytes.Clone(raw)
	damaged[len(damaged)-1] ^= 0xFF
	cases := map[string][]byte{"crc": damaged, "garbage length": append(bytes.Clone(raw[:2*recLen]), 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4, 5)}
	for cut := 2*recLen + 1; cut < len(raw); cut += 3 {
		cases[fmt.Sprintf("cut at %d", cut)] = raw[:cut]
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, offsetsLog), data, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := openOffsetStore(dir, disk.OSFS{}, testOptions(t).Logger, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(s.Keys()); got != "[{g t 0} {g t 1}]" {
				t.Fatalf("keys %s, want the first two", got)
			}
			if st, _ := os.Stat(filepath.Join(dir, offsetsLog)); st.Size() != int64(2*recLen) {
				t.Fatalf("log is %d bytes after recovery, want %d", st.Size(), 2*recLen)
			}
			done := make(chan error, 1)
			s.Commit(OffsetKey{Group: "g", Topic: "t", Partition: 7}, 70, func(err error) { done <- err })
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			// Replay what a crash would leave: the log as it is now.
			after, err := os.ReadFile(filepath.Join(dir, offsetsLog))
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			again := t.TempDir()
			os.WriteFile(filepath.Join(again, offsetsLog), after, 0o644)
			s2, err := openOffsetStore(again, disk.OSFS{}, testOptions(t).Logger, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if off, ok := s2.Get("g", "t", 7); !ok || off != 70 {
				t.Fatalf("commit after recovery: %d %v", off, ok)
			}
		})
	}
}

// TestOffsetCommitCostIsFlat: with thousands of groups stored, a commit appends one record to the
// log rather than rewriting every group's offsets, and the log is compacted into the snapshot
// once it outgrows it; the state survives both a restart and a crash between compaction's two
// steps.
func TestOffsetCommitCostIsFlat(t *testing.T) {
	o := testOptions(t)
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "x", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	fillRecords(t, e, "x", 10_000)      // commits beyond a partition's end are refused
	e.offsets.compactMin.Store(1 << 40) // first, no compaction
	const groups = 5000
	var wg sync.WaitGroup
	for i := range groups {
		wg.Add(1)
		e.CommitOffset(fmt.Sprintf("group-%05d", i), "x", 0, int64(i), func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	dir := filepath.Join(o.DataDir, "offsets")
	size := func(name string) int64 {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return -1
		}
		return st.Size()
	}
	before, snap := size(offsetsLog), size(offsetsSnapshot)
	commit(t, e, "group-00042", "x", 0, 4242)
	rec := int64(offsetRecHeader + offsetRecFixed + len("group-00042") + len("x"))
	if got := size(offsetsLog) - before; got != rec || size(offsetsSnapshot) != snap {
		t.Fatalf("one commit among %d groups: log grew by %d (want %d), snapshot %d -> %d bytes",
			groups, got, rec, snap, size(offsetsSnapshot))
	}
	// Compaction: once the log passes the threshold (lowered to 1 byte: twice the snapshot, and
	// there is none yet), the next write folds it into a snapshot.
	e.offsets.compactMin.Store(1)
	deadline := time.Now().Add(30 * time.Second)
	var preLog []byte
	last := int64(-1)
	for compacted := false; !compacted; {
		if time.Now().After(deadline) {
			t.Fatalf("log not compacted: %d bytes, snapshot %d", size(offsetsLog), size(offsetsSnapshot))
		}
		preLog, _ = os.ReadFile(filepath.Join(dir, offsetsLog))
		last++
		commit(t, e, "hot", "x", 0, last)
		compacted = size(offsetsLog) < int64(len(preLog))
	}
	if size(offsetsSnapshot) <= snap {
		t.Fatalf("snapshot %d bytes after compaction, %d before", size(offsetsSnapshot), snap)
	}
	// A crash between the snapshot's rename and the log's truncation leaves the new snapshot and
	// the whole old log, up to the record that triggered compaction: replaying it must change
	// nothing.
	crash := t.TempDir()
	snapRaw, _ := os.ReadFile(filepath.Join(dir, offsetsSnapshot))
	e.offsets.mu.Lock()
	at := e.offsets.m[OffsetKey{Group: "hot", Topic: "x"}].at
	var scratch offsetStore
	if err := scratch.appendRecordLocked(opSetOffset, at, last, "hot", "x", 0); err != nil {
		t.Fatal(err)
	}
	e.offsets.mu.Unlock()
	os.WriteFile(filepath.Join(crash, offsetsSnapshot), snapRaw, 0o644)
	os.WriteFile(filepath.Join(crash, offsetsLog), append(preLog, scratch.pending...), 0o644)
	commit(t, e, "hot", "x", 0, 10_000)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{dir: 10_000, crash: last}
	for _, d := range []string{dir, crash} {
		s, err := openOffsetStore(d, disk.OSFS{}, o.Logger, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		if off, _ := s.Get("hot", "x", 0); off != want[d] {
			t.Errorf("%s: hot at %d, want %d", d, off, want[d])
		}
		if off, _ := s.Get("group-00042", "x", 0); off != 4242 {
			t.Errorf("%s: group-00042 at %d, want 4242", d, off)
		}
		if n := len(s.Keys()); n != groups+1 {
			t.Errorf("%s: %d keys, want %d", d, n, groups+1)
		}
		s.Close()
	}
}

// TestOffsetsDeleteTopicIsLogged: deleting a topic deletes its offsets in the log too, so that a
// crash before the next snapshot does not bring them back for a topic created later under the name.
func TestOffsetsDeleteTopicIsLogged(t *testing.T) {
	o := testOptions(t)
	e := openEngine(t, o)
	for _, name := range []string{"x", "y"} {
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		fillRecords(t, e, name, 10)
		commit(t, e, "g", name, 0, 9)
	}
	if err := e.DeleteTopic("x"); err != nil {
		t.Fatal(err)
	}
	commit(t, e, "g", "y", 0, 10) // the delete record precedes this one in the log
	raw, err := os.ReadFile(filepath.Join(o.DataDir, "offsets", offsetsLog))
	if err != nil {
		t.Fatal(err)
	}
	crash := t.TempDir()
	if err := os.WriteFile(filepath.Join(crash, offsetsLog), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := openOffsetStore(crash, disk.OSFS{}, o.Logger, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := fmt.Sprint(s.Keys()); got != "[{g y 0}]" {
		t.Fatalf("keys replayed %s, want only g/y/0", got)
	}
}

// fillRecords appends n small records to partition 0 of topic, so that commits up to n are within
// its end.
func fillRecords(t *testing.T, e *Engine, topic string, n int) {
	t.Helper()
	b := wire.NewBatchBuilder(64 << 10)
	for done := 0; done < n; {
		b.Reset()
		for i := 0; i < 1000 && done < n; i++ {
			b.Append(nil, []byte("r"), nil, 1700000000000)
			done++
		}
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.Publish(context.Background(), topic, 0, batch, wire.DurabilityWritten); err != nil {
			t.Fatal(err)
		}
	}
}
