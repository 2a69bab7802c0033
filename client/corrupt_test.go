package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// Stored batches a consumer cannot read: written straight into a partition's log through the disk
// API while the broker is down, as data stored before brokers checked compressed records would be.

// corruptBatch builds n records (values "v<first+i>", header tag=keep) compressed with codec, then
// lets lie rewrite the batch, and fixes its CRC: the batch stays CRC-valid, as the broker stored it.
func corruptBatch(t testing.TB, codec wire.Codec, first, n int, lie func(b []byte)) []byte {
	t.Helper()
	bb := wire.NewBatchBuilder(1024)
	bb.SetCompression(codec)
	for i := range n {
		bb.Append(nil, []byte("v"+strconv.Itoa(first+i)), []wire.Header{{Key: []byte("tag"), Value: []byte("keep")}}, 1_700_000_000_000)
	}
	out, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(out)
	if lie != nil {
		lie(b)
	}
	binary.BigEndian.PutUint32(b[17:], wire.BatchCRC(b)) // crc field at 17, over 21..end
	return b
}

// claimCount makes a batch's header claim n records (recordCount at 57, lastOffsetDelta at 23).
func claimCount(n int) func([]byte) {
	return func(b []byte) {
		binary.BigEndian.PutUint32(b[57:], uint32(n))
		binary.BigEndian.PutUint32(b[23:], uint32(n-1))
	}
}

// asZstd relabels an uncompressed batch as zstd: its body is then not zstd at all.
func asZstd(b []byte) { binary.BigEndian.PutUint16(b[21:], uint16(wire.CodecZstd)) }

// appendUnchecked stores batches in partition 0 of topic with the broker stopped, bypassing the
// produce path's validation, then starts the broker again.
func appendUnchecked(t testing.TB, b *broker, topic string, batches ...[]byte) {
	t.Helper()
	b.stop()
	l, err := disk.Open(disk.Options{Dir: filepath.Join(b.dir, "topics", topic, "0"), SegmentBytes: 8 << 20, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, batch := range batches {
		if _, err := l.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b.start()
}

// syncBuffer is a log sink written by the client's goroutines and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// corruptLog is the partition behind TestUnreadableBatchPolicy: offsets 0-2 good; 3-5 a gzip batch
// whose header claims 3 records and that holds 2 (3 and 4 read, then it ends); 6-7 a "zstd" batch
// whose body is not zstd; 8-9 good.
func corruptLog(t *testing.T) (*broker, string) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "bad", 1)
	c.Close()
	appendUnchecked(t, b, "bad",
		corruptBatch(t, wire.CodecNone, 0, 3, nil),
		corruptBatch(t, wire.CodecGzip, 3, 2, claimCount(3)),
		corruptBatch(t, wire.CodecNone, 6, 2, asZstd),
		corruptBatch(t, wire.CodecNone, 8, 2, nil))
	return b, "bad"
}

// readAll reads until want records came or Next fails, returning the values and the error.
func readAll(ctx context.Context, cons *Consumer, want int) ([]string, error) {
	var got []string
	for len(got) < want {
		m, err := cons.Next(ctx)
		if err != nil {
			return got, err
		}
		got = append(got, fmt.Sprintf("%d:%s", m.Offset, m.Value))
	}
	return got, nil
}

func TestUnreadableBatchPolicy(t *testing.T) {
	b, topic := corruptLog(t)
	all := []string{"0:v0", "1:v1", "2:v2", "3:v3", "4:v4", "8:v8", "9:v9"}

	t.Run("stop-by-default", func(t *testing.T) {
		c := dialT(t, b.addr)
		cons, err := c.Subscribe(testCtx(t), topic, WithStartEarliest())
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close(context.Background())
		got, err := readAll(testCtx(t), cons, len(all))
		if !errors.Is(err, ErrCorruptBatch) || !errors.Is(err, wire.ErrCorrupt) || !strings.Contains(err.Error(), "offsets 3-5") {
			t.Fatalf("after %v: %v, want an unreadable-batch error naming offsets 3-5", got, err)
		}
		if strings.Join(got, " ") != "0:v0 1:v1 2:v2 3:v3 4:v4" {
			t.Fatalf("before the stop: %v", got)
		}
		// It stays stopped: nothing past the batch is ever returned.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if m, err2 := cons.Next(ctx); !errors.Is(err2, ErrCorruptBatch) || err2.Error() != err.Error() {
			t.Fatalf("next after the stop: %v %v", m, err2)
		}
		if st := cons.Stats(); st.SkippedBatches != 0 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("skip", func(t *testing.T) {
		var logs syncBuffer
		c := dialT(t, b.addr, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		cons, err := c.Subscribe(testCtx(t), topic, WithStartEarliest(), WithOnCorrupt(CorruptSkip))
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close(context.Background())
		got, err := readAll(testCtx(t), cons, len(all))
		if err != nil || strings.Join(got, " ") != strings.Join(all, " ") {
			t.Fatalf("got %v, %v; want %v", got, err, all)
		}
		if st := cons.Stats(); st != (ConsumerStats{SkippedBatches: 2, SkippedOffsets: 3}) {
			t.Fatalf("stats %+v, want 2 batches, 3 offsets (5 of the gzip batch, 6-7)", st)
		}
		for _, want := range []string{"partition=0 first=3 last=5", "partition=0 first=6 last=7"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("no warning with %q in:\n%s", want, logs.String())
			}
		}
	})

	t.Run("group-skips-and-commits-past", func(t *testing.T) {
		c := dialT(t, b.addr)
		cons, err := c.Subscribe(testCtx(t), topic, WithGroup("g"), WithStartEarliest(), WithOnCorrupt(CorruptSkip), WithAutoCommit(-1))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := readAll(testCtx(t), cons, len(all)); err != nil || len(got) != len(all) {
			t.Fatalf("got %v, %v", got, err)
		}
		if err := cons.Commit(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if err := cons.Close(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		// A member that would stop at the batch rejoins past it: the group committed 10.
		p, err := c.Producer(topic)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(context.Background())
		if _, err := p.Publish(testCtx(t), Record{Value: []byte("v10")}); err != nil {
			t.Fatal(err)
		}
		again, err := c.Subscribe(testCtx(t), topic, WithGroup("g"))
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close(context.Background())
		if got, err := readAll(testCtx(t), again, 1); err != nil || got[0] != "10:v10" {
			t.Fatalf("rejoined member read %v, %v; want 10:v10", got, err)
		}
	})

	t.Run("filtered", func(t *testing.T) {
		// The broker's filter cannot read the two batches either: it passes them on unfiltered and
		// the consumer's policy decides; none of their records reach the application.
		c := dialT(t, b.addr)
		cons, err := c.Subscribe(testCtx(t), topic, WithStartEarliest(), WithFilter("tag=keep"), WithOnCorrupt(CorruptSkip))
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close(context.Background())
		got, err := readAll(testCtx(t), cons, 5)
		if err != nil || strings.Join(got, " ") != "0:v0 1:v1 2:v2 8:v8 9:v9" {
			t.Fatalf("filtered: %v, %v", got, err)
		}
		if st := cons.Stats(); st.SkippedBatches != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}
