package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// brokerWithUnreadableBatch starts a broker whose topic "old" holds, in partition 0: records a, b; a
// CRC-valid gzip batch whose header says 3 records and that holds 2 (c, d), stored straight through
// the disk API as data written before produces checked compressed records would be; records e, f.
func brokerWithUnreadableBatch(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	const seg = 4 << 20 // servertest's segment size
	e, err := engine.Open(engine.Options{DataDir: dir, MemoryDir: filepath.Join(dir, "mem"), SegmentBytes: seg, Logger: servertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "old", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	batch := func(codec wire.Codec, values ...string) []byte {
		bb := wire.NewBatchBuilder(256)
		bb.SetCompression(codec)
		for _, v := range values {
			bb.Append(nil, []byte(v), nil, 1_700_000_000_000)
		}
		out, err := bb.Build()
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(out)
	}
	lie := batch(wire.CodecGzip, "c", "d")
	binary.BigEndian.PutUint32(lie[57:], 3)                  // recordCount
	binary.BigEndian.PutUint32(lie[23:], 2)                  // lastOffsetDelta
	binary.BigEndian.PutUint32(lie[17:], wire.BatchCRC(lie)) // still CRC-valid
	l, err := disk.Open(disk.Options{Dir: filepath.Join(dir, "topics", "old", "0"), SegmentBytes: seg, Logger: servertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{batch(wire.CodecNone, "a", "b"), lie, batch(wire.CodecNone, "e", "f")} {
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	srv, _ := servertest.Start(t, func(o *engine.Options) { o.DataDir, o.MemoryDir = dir, filepath.Join(dir, "mem") }, nil)
	return srv.Addr().String()
}

// TestConsumeOnCorrupt: by default `sluice consume` stops at a batch it cannot read with an error naming
// its offsets; --on-corrupt skip prints every readable record past it and says what it skipped; a
// group consuming with skip commits past the batch, so the next run starts after it.
func TestConsumeOnCorrupt(t *testing.T) {
	addr := brokerWithUnreadableBatch(t)

	r := sluice(t, addr, nil, "consume", "old", "--idle", "2s")
	if r.stdout != "a\nb\nc\nd\n" {
		t.Errorf("stop: stdout %q, want the records before the damage", r.stdout)
	}
	oneErrorLine(t, r, "offsets 2-4")

	r = ok(t, addr, nil, "consume", "old", "--idle", "500ms", "--on-corrupt", "skip", "--group", "g")
	if r.stdout != "a\nb\nc\nd\ne\nf\n" {
		t.Errorf("skip: stdout %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "skipped 1 unreadable batch(es), 1 offset(s)") {
		t.Errorf("skip: stderr %q", r.stderr)
	}
	ok(t, addr, []byte("g\n"), "produce", "old", "--quiet")
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	r = sluiceCtx(t, ctx, addr, nil, "consume", "old", "--group", "g", "--count", "1")
	if r.code != 0 || r.stdout != "g\n" {
		t.Errorf("group after skip: exit %d stdout %q stderr %q, want only the new record", r.code, r.stdout, r.stderr)
	}

	r = sluice(t, addr, nil, "consume", "old", "--on-corrupt", "maybe")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--on-corrupt") {
		t.Errorf("bad policy: exit %d stderr %q", r.code, r.stderr)
	}
}
