package servertest

import (
	"sync"
	"testing"
	"time"
)

// Pause holds the first goroutine to run Hook (a listener's loop, at a test hook such as the Kafka
// listener's produceHook or the MQTT listener's publishHook) until Resume. The zero value is not
// ready; use NewPause.
type Pause struct {
	reached, resume chan struct{}
	once            sync.Once
}

// NewPause returns a Pause that has held nothing yet.
func NewPause() *Pause { return &Pause{reached: make(chan struct{}), resume: make(chan struct{})} }

// Hook holds its first caller until Resume; later calls pass.
func (p *Pause) Hook() {
	p.once.Do(func() {
		close(p.reached)
		<-p.resume
	})
}

// AwaitReached waits until a goroutine is held in Hook, failing t after 10 s with what.
func (p *Pause) AwaitReached(t testing.TB, what string) {
	t.Helper()
	select {
	case <-p.reached:
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

// CloseWhilePaused drains a listener while p holds its loop: it starts closeFn on another goroutine,
// waits for stopping to report true, gives Close 50 ms to drain, lets the loop go, gives it 50 ms to
// hold its answer for the sync, then releases fs's fdatasyncs. It returns Close's result.
func CloseWhilePaused(t testing.TB, p *Pause, fs *GatedFS, closeFn func() error, stopping func() bool) <-chan error {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- closeFn() }()
	for deadline := time.Now().Add(10 * time.Second); !stopping(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Close did not start")
		}
	}
	time.Sleep(50 * time.Millisecond) // Close is draining
	close(p.resume)
	time.Sleep(50 * time.Millisecond) // the answer is held for the sync
	fs.Release()
	return closed
}
