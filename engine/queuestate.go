package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/sluicemq/sluice/disk"
)

// Work-queue settlement state on disk: <DataDir>/offsets/queues.json, a JSON array with one object per
// (group, topic, partition):
//
//	{"group":"workers","topic":"jobs","partition":0,"floor":40,"next":48,"unsettled":[[40,41],[44,46]]}
//
// floor: every offset below is settled. next: the next offset the queue dispatches from the log.
// unsettled: sorted, disjoint half-open runs [from, to) inside [floor, next) of records not yet
// settled (held by a member, due for redelivery, or waiting for the dead-letter topic). Every other
// offset in [floor, next) was acked. The acked set is stored as its complement because that is what
// stays small: it is bounded by the records in flight (MaxAckPending per member plus those due),
// however many acks land above a record that is still held.
//
// The file is rewritten whole, like offsets.json: temp file, fsync, rename, directory fsync, by one
// writer goroutine that coalesces every change made during a write into the next. An ack is recorded
// in memory at once and is on disk once a snapshot taken after it is written; SyncSettlements (and
// so an answered Ack frame) waits for that. A crash loses only acks not yet answered: their records
// are delivered again (at least once). A dispatch (next moving up) is not written on its own: after a
// crash, records dispatched but never acked are dispatched again, which they would be anyway.

// queueState is one partition's persisted settlement state.
type queueState struct {
	OffsetKey
	Floor     int64      `json:"floor"`
	Next      int64      `json:"next"`
	Unsettled [][2]int64 `json:"unsettled,omitempty"`
}

// queueStore writes work queues' settlement state. Its snapshot function (set once, before any
// change) is called on the writer goroutine with no store lock held.
type queueStore struct {
	path     string
	fs       disk.FS // writes path (Options.FS, so tests can fail it)
	log      *slog.Logger
	snapshot func() []queueState

	mu      sync.Mutex // guards everything below
	seq     uint64     // bumped by every change
	written uint64     // the seq of the last snapshot on disk
	waiters []offsetWaiter
	failed  error // a write failure: later syncs fail with it
	closing bool

	kick chan struct{} // 1-buffered: a change is waiting to be written
	done chan struct{} // closed when the writer has exited
}

// openQueueStore reads dir/queues.json and starts the writer. It returns the stored states by key.
func openQueueStore(dir string, fsys disk.FS, log *slog.Logger) (*queueStore, map[OffsetKey]queueState, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("engine: queue state: %w", err)
	}
	s := &queueStore{path: filepath.Join(dir, "queues.json"), fs: fsys, log: log,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	states := map[OffsetKey]queueState{}
	raw, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, nil, fmt.Errorf("engine: queue state: %w", err)
	default:
		var recs []queueState
		if err := json.Unmarshal(raw, &recs); err != nil {
			return nil, nil, fmt.Errorf("engine: queue state: %s: %w", s.path, err)
		}
		for _, r := range recs {
			states[r.OffsetKey] = r
		}
	}
	go s.writer()
	return s, states, nil
}

// touch records that the settlement state changed and wakes the writer.
func (s *queueStore) touch() {
	s.mu.Lock()
	s.seq++
	s.mu.Unlock()
	s.wakeWriter()
}

// sync calls done once every change recorded so far is on disk; with force, after one more write
// even when nothing changed (a dropped queue is then gone from the file). done runs on the writer
// goroutine, or at once when nothing is waiting to be written or the store has failed or closed.
func (s *queueStore) sync(force bool, done func(error)) {
	s.mu.Lock()
	if force {
		s.seq++
	}
	switch {
	case s.failed != nil:
		err := s.failed
		s.mu.Unlock()
		done(err)
		return
	case s.written >= s.seq:
		s.mu.Unlock()
		done(nil)
		return
	case s.closing:
		s.mu.Unlock()
		done(errors.New("engine: queue state: closed"))
		return
	}
	s.waiters = append(s.waiters, offsetWaiter{seq: s.seq, done: done})
	s.mu.Unlock()
	s.wakeWriter()
}

func (s *queueStore) wakeWriter() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *queueStore) writer() {
	defer close(s.done)
	for range s.kick {
		s.mu.Lock()
		seq, closing, written := s.seq, s.closing, s.written
		s.mu.Unlock()
		var err error
		if seq != written || closing {
			// Every change counted in seq was made before this snapshot is taken.
			recs := s.snapshot()
			sort.Slice(recs, func(i, j int) bool { return recs[i].OffsetKey.less(recs[j].OffsetKey) })
			if recs == nil {
				recs = []queueState{}
			}
			if err = disk.WriteFileAtomic(s.fs, s.path, mustJSON(recs), 0o644); err != nil {
				err = fmt.Errorf("engine: queue state: %w", err)
				s.log.Error("work-queue settlement state could not be written; acks are answered with the error from now on", "err", err)
			}
		}
		s.mu.Lock()
		if err == nil {
			s.written = max(s.written, seq)
		} else if s.failed == nil {
			s.failed = err
		}
		ready, keep := splitWaiters(s.waiters, s.written, s.failed != nil)
		s.waiters = keep
		failed := s.failed
		if len(keep) > 0 || s.seq != s.written && failed == nil {
			s.wakeWriter()
		}
		s.mu.Unlock()
		for _, w := range ready {
			w.done(failed)
		}
		if closing {
			return
		}
	}
}

// Close writes a final snapshot and stops the writer.
func (s *queueStore) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	s.wakeWriter()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.waiters {
		w.done(errors.New("engine: queue state: closed"))
	}
	s.waiters = nil
	return s.failed
}

// snapshot is the state of every queue, for the store's writer: the live queues' partitions and the
// restored states of queues not joined since the engine opened.
func (qt *queueTable) snapshot() []queueState {
	qt.mu.Lock()
	defer qt.mu.Unlock()
	out := make([]queueState, 0, len(qt.restored)+len(qt.queues))
	for _, st := range qt.restored {
		out = append(out, st)
	}
	for _, q := range qt.queues {
		if q.dropped.Load() || q.topic.deleted.Load() {
			continue
		}
		for _, qp := range q.parts {
			qp.mu.Lock()
			out = append(out, qp.stateLocked())
			qp.mu.Unlock()
		}
	}
	return out
}

// stateLocked is the partition's persisted form: floor, next and the unsettled runs between.
func (qp *queuePart) stateLocked() queueState {
	st := queueState{OffsetKey: OffsetKey{Group: qp.q.key.group, Topic: qp.q.key.topic, Partition: qp.p.id},
		Floor: qp.floor, Next: qp.next}
	offs := make([]int64, 0, len(qp.pending)+len(qp.due)+len(qp.dead))
	for off := range qp.pending {
		offs = append(offs, off)
	}
	for off := range qp.due {
		offs = append(offs, off)
	}
	for off := range qp.dead {
		offs = append(offs, off)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	for _, off := range offs {
		if off < qp.floor || off >= qp.next {
			continue
		}
		if n := len(st.Unsettled); n > 0 && st.Unsettled[n-1][1] >= off {
			st.Unsettled[n-1][1] = max(st.Unsettled[n-1][1], off+1)
			continue
		}
		st.Unsettled = append(st.Unsettled, [2]int64{off, off + 1})
	}
	return st
}
