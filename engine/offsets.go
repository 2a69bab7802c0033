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

	"github.com/sluicemq/sluice/wire"
)

// OffsetKey names one committed offset.
type OffsetKey struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

type offsetRecord struct {
	OffsetKey
	Offset int64 `json:"offset"`
}

// offsetStore keeps consumer groups' committed offsets durable. Commits update the map at once and
// are acknowledged when a snapshot containing them has been written with temp file + fsync + rename
// + directory fsync. One writer goroutine coalesces every commit made while it was writing into the
// next snapshot, so the store does one fsync per burst, not per commit.
type offsetStore struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex // guards everything below
	m       map[OffsetKey]int64
	seq     uint64 // bumped by every commit
	waiters []offsetWaiter
	failed  error // a write failure: the store accepts no more commits
	closing bool

	kick chan struct{} // 1-buffered: a commit is waiting to be written
	done chan struct{} // closed when the writer has exited
}

type offsetWaiter struct {
	seq  uint64
	done func(error)
}

func openOffsetStore(dir string, log *slog.Logger) (*offsetStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: offsets: %w", err)
	}
	s := &offsetStore{path: filepath.Join(dir, "offsets.json"), log: log, m: map[OffsetKey]int64{},
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	raw, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("engine: offsets: %w", err)
	default:
		var recs []offsetRecord
		if err := json.Unmarshal(raw, &recs); err != nil {
			return nil, fmt.Errorf("engine: offsets: %s: %w", s.path, err)
		}
		for _, r := range recs {
			s.m[r.OffsetKey] = r.Offset
		}
	}
	go s.writer()
	return s, nil
}

// Commit sets key's offset and calls done once it is durable.
func (s *offsetStore) Commit(key OffsetKey, offset int64, done func(error)) {
	s.commitLive(key, offset, nil, done)
}

// commitLive is Commit for a topic that may be deleted meanwhile: gone, if not nil, is asked under the
// store's lock, and a commit for a gone topic is refused with CodeUnknownTopic. DeleteTopic marks the
// topic gone before it takes the lock to drop the topic's offsets, so no commit can slip in after.
func (s *offsetStore) commitLive(key OffsetKey, offset int64, gone func() bool, done func(error)) {
	s.mu.Lock()
	if gone != nil && gone() {
		s.mu.Unlock()
		done(&wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: "topic " + key.Topic + " was deleted"})
		return
	}
	if err := s.failed; err != nil || s.closing {
		s.mu.Unlock()
		if err == nil {
			err = errors.New("engine: offsets: closed")
		}
		done(err)
		return
	}
	s.m[key] = offset
	s.seq++
	s.waiters = append(s.waiters, offsetWaiter{seq: s.seq, done: done})
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Get returns key's committed offset.
func (s *offsetStore) Get(group, topic string, partition int32) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off, ok := s.m[OffsetKey{Group: group, Topic: topic, Partition: partition}]
	return off, ok
}

// DeleteTopic forgets every committed offset of topic, so a topic created later under the same name
// does not inherit them. It is written with the next snapshot.
func (s *offsetStore) DeleteTopic(topic string) {
	s.mu.Lock()
	changed := false
	for k := range s.m {
		if k.Topic == topic {
			delete(s.m, k)
			changed = true
		}
	}
	if changed {
		s.seq++
	}
	s.mu.Unlock()
	if changed {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// Keys lists every stored key, sorted.
func (s *offsetStore) Keys() []OffsetKey {
	s.mu.Lock()
	keys := make([]OffsetKey, 0, len(s.m))
	for k := range s.m {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	return keys
}

func (s *offsetStore) writer() {
	defer close(s.done)
	for range s.kick {
		s.mu.Lock()
		seq := s.seq
		recs := make([]offsetRecord, 0, len(s.m))
		for k, v := range s.m {
			recs = append(recs, offsetRecord{OffsetKey: k, Offset: v})
		}
		closing := s.closing
		s.mu.Unlock()

		sort.Slice(recs, func(i, j int) bool { return recs[i].OffsetKey.less(recs[j].OffsetKey) })
		err := writeFileAtomic(s.path, mustJSON(recs))
		if err != nil {
			err = fmt.Errorf("engine: offsets: %w", err)
			s.log.Error("committed offsets could not be written; commits are refused from now on", "err", err)
		}

		s.mu.Lock()
		var ready []offsetWaiter
		keep := s.waiters[:0]
		for _, w := range s.waiters {
			if w.seq <= seq || err != nil {
				ready = append(ready, w)
			} else {
				keep = append(keep, w)
			}
		}
		s.waiters = keep
		if err != nil && s.failed == nil {
			s.failed = err
		}
		s.mu.Unlock()
		for _, w := range ready {
			w.done(err)
		}
		if closing {
			return
		}
	}
}

func (k OffsetKey) less(o OffsetKey) bool {
	if k.Group != o.Group {
		return k.Group < o.Group
	}
	if k.Topic != o.Topic {
		return k.Topic < o.Topic
	}
	return k.Partition < o.Partition
}

// Close writes a final snapshot and stops the writer.
func (s *offsetStore) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}
