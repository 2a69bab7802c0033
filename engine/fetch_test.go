package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// wakeOwner records the cursors it is woken with.
type wakeOwner struct{ woken chan *Cursor }

func (o *wakeOwner) Wake(c *Cursor)           { o.woken <- c }
func (o *wakeOwner) Reassign(s *Subscription) {}

// TestReaderReadsByOffset: a Reader returns whole stored batches from the one holding the offset,
// within maxBytes but at least one batch; an empty Delivery at the end; CodeOffsetOutOfRange below
// the start and beyond the end.
func TestReaderReadsByOffset(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "r", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := e.TopicByName("r").Partition(0)
	b := wire.NewBatchBuilder(4096)
	batch := buildBatch(t, b, []record{{key: "a", value: "1"}, {key: "b", value: "2"}})
	for range 3 {
		if _, _, err := p.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	o := &wakeOwner{woken: make(chan *Cursor, 4)}
	r := p.NewReader(o)
	defer r.Close()
	for _, tc := range []struct {
		offset   int64
		maxBytes int
		want     int // bytes
		first    int64
	}{{0, 1 << 20, 3 * len(batch), 0}, {3, 1 << 20, 2 * len(batch), 2}, {0, 1, len(batch), 0}, {6, 1 << 20, 0, 0}} {
		d, err := r.Read(tc.offset, tc.maxBytes)
		if err != nil {
			t.Fatalf("read %d: %v", tc.offset, err)
		}
		if got := d.Batches(); len(got) != tc.want || (tc.want > 0 && wire.BaseOffset(got) != tc.first) || d.HighWatermark != 6 {
			t.Fatalf("read %d max %d: %d bytes from %d, hw %d", tc.offset, tc.maxBytes, len(got), wire.BaseOffset(got), d.HighWatermark)
		}
		d.Release()
	}
	for _, off := range []int64{-1, 7} {
		if _, err := r.Read(off, 1<<20); !errors.Is(err, wire.CodeOffsetOutOfRange) {
			t.Fatalf("read %d: %v, want CodeOffsetOutOfRange", off, err)
		}
	}

	// WaitBeyond: nothing armed while records are there; armed at the end, one wake on the next append.
	if r.WaitBeyond(5) {
		t.Fatal("armed below the end")
	}
	if !r.WaitBeyond(6) {
		t.Fatal("not armed at the end")
	}
	if _, _, err := p.Append(batch); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-o.woken:
		if c != r.Cursor() || c.Subscription() != nil {
			t.Fatal("woken with another cursor")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not woken by the append")
	}
	if _, _, err := p.Append(batch); err != nil {
		t.Fatal(err)
	}
	select {
	case <-o.woken:
		t.Fatal("woken twice for one arming")
	case <-time.After(50 * time.Millisecond):
	}
}
