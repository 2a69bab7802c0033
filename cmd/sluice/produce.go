package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

func init() {
	register(command{name: "produce", summary: "send records from stdin or a file to a topic", run: runProduce})
}

// maxRecordBytes bounds one record read from the input: the largest frame the broker accepts. The
// broker's batch limit (1 MiB by default) usually refuses a smaller one first.
const maxRecordBytes = wire.DefaultMaxFrame

// minBatchBytes is the smallest --batch-bytes: a batch header and a small record.
const minBatchBytes = wire.BatchHeaderSize + 16

func runProduce(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("produce", "TOPIC",
		"Send records to TOPIC: one per line of stdin (or of --file), or one per --delim, or the whole\n"+
			"input as one record with --whole. Records are split exactly at the delimiter and keep every\n"+
			"other byte; a final delimiter ends the last record and adds none. A summary line (records,\n"+
			"bytes, offsets per partition) goes to stderr unless --quiet.", stdout, stderr)
	file := f.String("file", "", "read records from file `F` instead of stdin (\"-\": stdin)")
	delim := delimFlag("\n")
	f.Var(&delim, "delim", "record delimiter `D`: bytes, with the escapes \\n \\r \\t \\0 \\\\ \\xHH")
	whole := f.Bool("whole", false, "send the whole input as one record")
	var key optString
	f.Var(&key, "key", "give every record the key `K`")
	keyField := f.Bool("key-field", false, "each record is KEY<tab>VALUE: the key is the bytes before the first tab")
	var headers listFlag
	f.Var(&headers, "header", "add header `k=v` to every record; repeatable")
	partition := f.Int("partition", -1, "send every record to partition `P` (default: by key; records without one go in whole batches, spread over the partitions)")
	durability := durabilityFlag(wire.DurabilityWritten)
	f.Var(&durability, "durability", "`LEVEL` at which a record counts as sent: none, written (in the broker's log) or fsync (on disk)")
	codec := codecFlag(wire.CodecNone)
	f.Var(&codec, "compression", "batch compression `CODEC`: none, gzip, snappy, lz4 or zstd")
	var batchBytes byteSize
	f.Var(&batchBytes, "batch-bytes", "largest batch `B` sent, uncompressed, e.g. 256KiB (default 1MiB; never above the broker's limit)")
	quiet := f.Bool("quiet", false, "print no summary")
	ttl := f.Duration("ttl", 0, "every record expires `D` after its timestamp (e.g. 30s): never delivered after, dead-lettered by work queues")
	deliverAt := f.String("deliver-at", "", "hold every record back from work-queue members until `T`: RFC 3339 (2026-12-01T10:00:00Z) or +DURATION from now (+10s)")
	priority := f.Int("priority", 0, "work-queue priority `N` of every record, 0 (lowest) to 9")
	ops, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	switch {
	case *whole && flagGiven(f, "delim"):
		return f.usageError("--whole and --delim exclude each other")
	case key.set && *keyField:
		return f.usageError("--key and --key-field exclude each other")
	case *partition < -1:
		return f.usageError("--partition %d is not a partition", *partition)
	case flagGiven(f, "batch-bytes") && (batchBytes < minBatchBytes || batchBytes > maxRecordBytes):
		return f.usageError("--batch-bytes %d outside %d..%d", int64(batchBytes), minBatchBytes, maxRecordBytes)
	}
	var hdrs []client.Header
	switch {
	case flagGiven(f, "ttl") && *ttl <= 0:
		return f.usageError("--ttl %v: want a positive duration", *ttl)
	case flagGiven(f, "priority") && (*priority < 0 || *priority >= wire.PriorityLevels):
		return f.usageError("--priority %d outside 0..%d", *priority, wire.PriorityLevels-1)
	}
	if *ttl > 0 {
		hdrs = append(hdrs, client.TTLHeader(*ttl))
	}
	if *deliverAt != "" {
		at, err := parseDeliverAt(*deliverAt, time.Now())
		if err != nil {
			return f.usageError("--deliver-at %q: %v", *deliverAt, err)
		}
		hdrs = append(hdrs, client.DeliverAtHeader(at))
	}
	if flagGiven(f, "priority") {
		hdrs = append(hdrs, client.PriorityHeader(*priority))
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return f.usageError("--header %q is not k=v", h)
		}
		hdrs = append(hdrs, client.Header{Key: []byte(k), Value: []byte(v)})
	}
	topic := ops[0]

	in := stdin
	if *file != "" && *file != "-" {
		fh, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer fh.Close()
		in = fh
	}

	c, err := f.g.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	popts := []client.ProducerOption{client.WithDurability(wire.Durability(durability)), client.WithCompression(wire.Codec(codec))}
	if *partition >= 0 {
		popts = append(popts, client.WithPartitioner(client.ManualPartitioner()))
	}
	if batchBytes > 0 {
		popts = append(popts, client.WithMaxBatchBytes(int(batchBytes)))
	}
	p, err := c.Producer(topic, popts...)
	if err != nil {
		return err
	}
	if *partition >= int(p.Partitions()) {
		_ = p.Close(ctx)
		return fmt.Errorf("topic %s has no partition %d: it has %d", topic, *partition, p.Partitions())
	}

	t := newTally(wire.Durability(durability))
	feed := &feeder{
		p: p, t: t, delim: delim, whole: *whole, keyField: *keyField, headers: hdrs,
		partition: int32(*partition),
	}
	if key.set {
		feed.key = []byte(key.v)
	}
	// The input is read on its own goroutine, so an interrupt ends the command even while a read
	// from a terminal or a pipe blocks; what was read by then is still sent.
	fed := make(chan error, 1)
	go func() { fed <- feed.run(ctx, in) }()
	var ferr error
	select {
	case ferr = <-fed:
	case <-ctx.Done():
		ferr = errors.New("interrupted")
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.g.timeout)
	defer cancel()
	cerr := p.Close(cctx) // sends what is buffered and waits for the answers
	if !*quiet {
		fmt.Fprintln(stderr, t.summary(topic))
	}
	if ferr != nil {
		return ferr
	}
	if err := t.err(); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("waiting for the broker: %w", cerr)
	}
	return nil
}

// parseDeliverAt reads --deliver-at: an RFC 3339 time, or "+" and a Go duration after now.
func parseDeliverAt(s string, now time.Time) (time.Time, error) {
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 {
			return time.Time{}, errors.New("want +DURATION (e.g. +10s) or an RFC 3339 time")
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("want an RFC 3339 time (e.g. 2026-12-01T10:00:00Z) or +DURATION")
	}
	return t, nil
}

// feeder splits the input into records and produces them.
type feeder struct {
	p         *client.Producer
	t         *tally
	delim     []byte
	whole     bool
	keyField  bool
	key       []byte // nil: no key (unless keyField)
	headers   []client.Header
	partition int32 // -1: the partitioner decides
}

func (fd *feeder) run(ctx context.Context, in io.Reader) error {
	if fd.whole {
		v, err := io.ReadAll(io.LimitReader(in, maxRecordBytes+1))
		if err != nil {
			return fmt.Errorf("reading the input: %w", err)
		}
		if len(v) > maxRecordBytes {
			return fmt.Errorf("the input is larger than %d bytes, the largest record", maxRecordBytes)
		}
		return fd.produce(ctx, 1, v)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxRecordBytes)
	sc.Split(splitOn(fd.delim))
	n := 0
	for sc.Scan() {
		n++
		if err := fd.produce(ctx, n, sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("record %d is longer than %d bytes, the largest record", n+1, maxRecordBytes)
		}
		return fmt.Errorf("reading the input: %w", err)
	}
	return nil
}

// produce queues record n (counted from 1). The producer copies the bytes before Produce returns, so
// the scanner may reuse them.
func (fd *feeder) produce(ctx context.Context, n int, data []byte) error {
	rec := client.Record{Key: fd.key, Value: data, Headers: fd.headers, Partition: fd.partition}
	if fd.keyField {
		k, v, ok := bytes.Cut(data, []byte{'\t'})
		if !ok {
			return fmt.Errorf("record %d has no tab to end its key (--key-field)", n)
		}
		rec.Key, rec.Value = k, v
	}
	if err := fd.p.Produce(ctx, rec, fd.t.done); err != nil {
		return fmt.Errorf("record %d: %w", n, err)
	}
	fd.t.queued(len(rec.Value))
	return nil
}

// splitOn is a bufio.SplitFunc cutting at every occurrence of delim. An empty record between two
// delimiters is a record; input after the last delimiter is the last record.
func splitOn(delim []byte) bufio.SplitFunc {
	return func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.Index(data, delim); i >= 0 {
			return i + len(delim), data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
}

// tally counts what a produce sent and what the broker answered. queued runs on the feeding
// goroutine, done on the client's; mu guards everything.
type tally struct {
	mu         sync.Mutex
	durability wire.Durability
	records    int
	bytes      int64
	failed     int
	firstErr   error
	spans      map[int32]*span // acknowledged offsets by partition
}

type span struct{ first, last int64 }

func newTally(d wire.Durability) *tally {
	return &tally{durability: d, spans: map[int32]*span{}}
}

func (t *tally) queued(n int) {
	t.mu.Lock()
	t.records++
	t.bytes += int64(n)
	t.mu.Unlock()
}

func (t *tally) done(r client.Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.Err != nil {
		t.failed++
		if t.firstErr == nil {
			t.firstErr = r.Err
		}
		return
	}
	if r.Offset < 0 {
		return // durability none: no offsets
	}
	s := t.spans[r.Partition]
	if s == nil {
		t.spans[r.Partition] = &span{first: r.Offset, last: r.Offset}
		return
	}
	s.first, s.last = min(s.first, r.Offset), max(s.last, r.Offset)
}

func (t *tally) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d records failed: %w", t.failed, t.records, t.firstErr)
}

// summary is the line printed after a produce, such as
// "produced 3 records (17 bytes) to orders: partition 0 offsets 0-2".
func (t *tally) summary(topic string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "produced %d %s (%d bytes) to %s", t.records-t.failed, plural(t.records-t.failed, "record"), t.bytes, topic)
	if t.failed > 0 {
		fmt.Fprintf(&b, ", %d failed", t.failed)
	}
	if t.durability == wire.DurabilityNone {
		if t.records > 0 {
			b.WriteString(": offsets unknown at durability none")
		}
		return b.String()
	}
	parts := make([]int32, 0, len(t.spans))
	for p := range t.spans {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for i, p := range parts {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		s := t.spans[p]
		if s.first == s.last {
			fmt.Fprintf(&b, "%spartition %d offset %d", sep, p, s.first)
		} else {
			fmt.Fprintf(&b, "%spartition %d offsets %d-%d", sep, p, s.first, s.last)
		}
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// durabilityFlag is a --durability value.
type durabilityFlag wire.Durability

func (d *durabilityFlag) String() string { return wire.Durability(*d).String() }

func (d *durabilityFlag) Set(s string) error {
	v, err := wire.ParseDurability(s)
	if err != nil {
		return errors.New("want none, written or fsync")
	}
	*d = durabilityFlag(v)
	return nil
}

// codecFlag is a --compression value.
type codecFlag wire.Codec

func (c *codecFlag) String() string { return wire.Codec(*c).String() }

func (c *codecFlag) Set(s string) error {
	v, err := wire.ParseCodec(s)
	if err != nil {
		return errors.New("want none, gzip, snappy, lz4 or zstd")
	}
	*c = codecFlag(v)
	return nil
}
