// Package connset is a listener's registry of its open connections: admission against a connection
// limit, counted in the listener's metrics; the stopping flag that refuses new ones; the walk over
// the open ones that ticks and shutdown make; and shutdown's wait for answers still owed.
package connset

import (
	"sync"
	"sync/atomic"
	"time"
)

// Set holds the open connections of type C (a pointer to the listener's connection state). The zero
// Set admits none; Init it before the listener starts. Safe for concurrent use.
type Set[C comparable] struct {
	max      int64
	accepted *atomic.Uint64 // connections accepted, including those refused at once
	refused  *atomic.Uint64 // connections refused for the limit
	open     *atomic.Int64  // connections open now
	stopping atomic.Bool

	mu    sync.Mutex
	conns map[C]struct{}
}

// Init sets the limit (max open connections) and the listener's counters, which the Set keeps
// up to date. Call it once, before any Admit.
func (s *Set[C]) Init(max int, accepted, refused *atomic.Uint64, open *atomic.Int64) {
	s.max, s.accepted, s.refused, s.open = int64(max), accepted, refused, open
	s.conns = make(map[C]struct{})
}

// Admit counts a new connection in and adds it, or reports false when it must be refused: the
// listener is stopping, or max connections are open (counted as refused).
func (s *Set[C]) Admit(c C) bool {
	s.accepted.Add(1)
	if s.stopping.Load() {
		return false
	}
	if s.open.Add(1) > s.max {
		s.open.Add(-1)
		s.refused.Add(1)
		return false
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return true
}

// Forget removes an admitted connection that has closed.
func (s *Set[C]) Forget(c C) {
	s.open.Add(-1)
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Stop makes Admit refuse every connection from now on.
func (s *Set[C]) Stop() { s.stopping.Store(true) }

// Stopping reports whether Stop was called.
func (s *Set[C]) Stopping() bool { return s.stopping.Load() }

// Range calls fn for each open connection, holding the Set's lock: fn must not block, nor Admit or
// Forget.
func (s *Set[C]) Range(fn func(C)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		fn(c)
	}
}

// Drain waits, at most timeout, until owes reports false for every open connection, polling every
// 2 ms; owes(c), called under the Set's lock, reports whether c still has answers to send (and may
// nudge its loop to send them). It reports whether none was left owing.
func (s *Set[C]) Drain(timeout time.Duration, owes func(C) bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		left := 0
		s.Range(func(c C) {
			if owes(c) {
				left++
			}
		})
		if left == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}
