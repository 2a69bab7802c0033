package connset

import (
	"sync/atomic"
	"testing"
	"time"
)

type conn struct{ owes atomic.Int32 }

func TestAdmitLimitAndStop(t *testing.T) {
	var accepted, refused atomic.Uint64
	var open atomic.Int64
	var s Set[*conn]
	s.Init(2, &accepted, &refused, &open)
	a, b, c := &conn{}, &conn{}, &conn{}
	if !s.Admit(a) || !s.Admit(b) {
		t.Fatal("the first two connections were refused")
	}
	if s.Admit(c) {
		t.Fatal("a third connection was admitted past the limit of 2")
	}
	if accepted.Load() != 3 || refused.Load() != 1 || open.Load() != 2 {
		t.Fatalf("accepted %d refused %d open %d, want 3 1 2", accepted.Load(), refused.Load(), open.Load())
	}
	s.Forget(a)
	if !s.Admit(c) {
		t.Fatal("a connection was refused after one closed")
	}
	seen := map[*conn]bool{}
	s.Range(func(x *conn) { seen[x] = true })
	if len(seen) != 2 || !seen[b] || !seen[c] || seen[a] {
		t.Fatalf("Range saw %v, want b and c", seen)
	}
	s.Stop()
	s.Forget(b)
	if !s.Stopping() || s.Admit(a) {
		t.Fatal("a stopping set admitted a connection")
	}
	if open.Load() != 1 || refused.Load() != 1 {
		t.Fatalf("open %d refused %d after stop, want 1 1 (a stop is not the limit)", open.Load(), refused.Load())
	}
}

func TestDrain(t *testing.T) {
	var accepted, refused atomic.Uint64
	var open atomic.Int64
	var s Set[*conn]
	s.Init(10, &accepted, &refused, &open)
	a, b := &conn{}, &conn{}
	s.Admit(a)
	s.Admit(b)
	a.owes.Store(3)
	polls := 0
	ok := s.Drain(5*time.Second, func(c *conn) bool {
		if c == a {
			polls++
		}
		return c.owes.Add(-1) >= 0 // a answers one per poll
	})
	if !ok || polls != 4 {
		t.Fatalf("Drain = %v after %d polls of a, want true after 4", ok, polls)
	}
	b.owes.Store(1 << 20)
	start := time.Now()
	if s.Drain(20*time.Millisecond, func(c *conn) bool { return c.owes.Load() > 0 }) {
		t.Fatal("Drain reported none owing while b owed")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Drain gave up after %v, before its 20ms", d)
	}
}
