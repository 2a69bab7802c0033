package wire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
)

// allocBytes reports the bytes fn allocates on the heap.
func allocBytes(fn func()) uint64 {
	// One P while measuring, as testing.AllocsPerRun does, so other goroutines add less to the
	// process-wide counter.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// leastAllocBytes is allocBytes of a repeatable fn, the least of three runs: noise only adds.
func leastAllocBytes(fn func()) uint64 {
	least := ^uint64(0)
	for range 3 {
		least = min(least, allocBytes(fn))
	}
	return least
}

func TestFrameHeaderLayout(t *testing.T) {
	b, start := BeginFrame([]byte("xx"), OpProduce, FlagNoReply, 0x01020304)
	b = append(b, "body"...)
	b = EndFrame(b, start)
	want := []byte{'x', 'x', 0, 0, 0, 10, 0x10, 0x02, 1, 2, 3, 4, 'b', 'o', 'd', 'y'}
	if !bytes.Equal(b, want) {
		t.Fatalf("frame %x, want %x", b, want)
	}
	var hdr [FrameHeaderSize]byte
	PutFrameHeader(hdr[:], OpProduce, FlagNoReply, 0x01020304, 4)
	if !bytes.Equal(hdr[:], want[2:12]) {
		t.Fatalf("PutFrameHeader %x", hdr)
	}
	h, err := ParseFrameHeader(b[2:], DefaultMaxFrame)
	if err != nil || h != (FrameHeader{Size: 14, Op: OpProduce, Flags: FlagNoReply, Corr: 0x01020304}) {
		t.Fatalf("%+v %v", h, err)
	}
	f, n, err := ParseFrame(b[2:], DefaultMaxFrame)
	if err != nil || n != 14 || string(f.Body) != "body" || cap(f.Body) != 4 {
		t.Fatalf("%+v %d %v", f, n, err)
	}
}

func TestParseFrameHeaderRejects(t *testing.T) {
	hdr := func(n uint32) []byte { return append(u32(nil, n), 0x10, 0, 0, 0, 0, 1) }
	cases := []struct {
		name string
		b    []byte
		max  int
		want error
	}{
		{"short", hdr(6)[:9], DefaultMaxFrame, ErrTruncated},
		{"empty", nil, DefaultMaxFrame, ErrTruncated},
		{"below-header", hdr(5), DefaultMaxFrame, ErrMalformed},
		{"zero", hdr(0), DefaultMaxFrame, ErrMalformed},
		{"one-over", hdr(DefaultMaxFrame - 3), DefaultMaxFrame, ErrFrameTooLarge},
		{"huge", hdr(0xffffffff), DefaultMaxFrame, ErrFrameTooLarge},
		{"small-max", hdr(MinMaxFrame), MinMaxFrame, ErrFrameTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ParseFrameHeader(c.b, c.max); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if _, _, err := ParseFrame(c.b, c.max); !errors.Is(err, c.want) {
				t.Fatalf("ParseFrame: got %v, want %v", err, c.want)
			}
		})
	}
	// Exactly the maximum is allowed; the header is 6 bytes of the length.
	if h, err := ParseFrameHeader(hdr(DefaultMaxFrame-4), DefaultMaxFrame); err != nil || h.Size != DefaultMaxFrame {
		t.Fatalf("frame of exactly the max: %+v %v", h, err)
	}
	if h, err := ParseFrameHeader(hdr(6), DefaultMaxFrame); err != nil || h.Size != FrameHeaderSize {
		t.Fatalf("empty body: %+v %v", h, err)
	}
}

// TestDecoderOversizedBeforeAllocating: a 4 GiB length is refused from the header alone, whether the
// header arrives whole or in pieces, and nothing near the announced size is allocated.
func TestDecoderOversizedBeforeAllocating(t *testing.T) {
	// The header claims a 4 GiB frame. The decoder must refuse it from the header alone, holding at
	// most the header and allocating nothing near the claimed size. Allocations are counted process-wide
	// (the race runtime and GC workers add a few KiB now and then), so the least of three attempts is
	// checked against 64 KiB: far below any buffer for the frame.
	b := append(u32(nil, 0xfffffff0), byte(OpProduce), 0, 0, 0, 0, 1)
	b = append(b, make([]byte, 100)...)
	for split := range FrameHeaderSize + 1 {
		least := ^uint64(0)
		for range 3 {
			d := NewDecoder(DefaultMaxFrame)
			var err error
			n := allocBytes(func() {
				err = d.Feed(b[:split], func(Frame) error { t.Fatal("frame yielded"); return nil })
				if err == nil {
					err = d.Feed(b[split:], func(Frame) error { t.Fatal("frame yielded"); return nil })
				}
			})
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("split %d: %v", split, err)
			}
			if d.Buffered() > FrameHeaderSize {
				t.Fatalf("split %d: %d bytes buffered", split, d.Buffered())
			}
			least = min(least, n)
		}
		if least > 64<<10 {
			t.Fatalf("split %d: %d bytes allocated", split, least)
		}
	}
}

type testFrame struct {
	Op    Op
	Flags Flags
	Corr  uint32
	Body  string
}

// testStream encodes n frames of assorted ops and body sizes, empty bodies included.
func testStream(rng *rand.Rand, n, maxBody int) ([]byte, []testFrame) {
	ops := []Op{OpProduce, OpDeliver, OpCredit, OpPing, OpAck, OpError, Op(0x7f)}
	var b []byte
	var want []testFrame
	for i := range n {
		f := testFrame{Op: ops[rng.IntN(len(ops))], Flags: Flags(rng.IntN(4)), Corr: uint32(i) * 2654435761}
		body := make([]byte, rng.IntN(maxBody+1))
		for j := range body {
			body[j] = byte(rng.Uint32())
		}
		f.Body = string(body)
		var start int
		b, start = BeginFrame(b, f.Op, f.Flags, f.Corr)
		b = EndFrame(append(b, body...), start)
		want = append(want, f)
	}
	return b, want
}

// feedChunks feeds stream to a decoder cut at the given ascending points. Each chunk is a fresh copy
// that is scribbled over after Feed returns, as a network buffer would be reused, so a decoder that
// kept a reference into a chunk would yield wrong frames.
func feedChunks(t testing.TB, d *Decoder, stream []byte, cuts []int) ([]testFrame, error) {
	var got []testFrame
	fn := func(f Frame) error {
		got = append(got, testFrame{f.Op, f.Flags, f.Corr, string(f.Body)})
		return nil
	}
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		chunk := bytes.Clone(stream[prev:c])
		err := d.Feed(chunk, fn)
		for i := range chunk {
			chunk[i] = 0xEE
		}
		if err != nil {
			return got, err
		}
		prev = c
	}
	return got, nil
}

func equalFrames(a, b []testFrame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecoderEverySplitPoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	stream, want := testStream(rng, 60, 200)
	for cut := 0; cut <= len(stream); cut++ {
		d := NewDecoder(DefaultMaxFrame)
		got, err := feedChunks(t, d, stream, []int{cut})
		if err != nil || !equalFrames(got, want) || d.Buffered() != 0 {
			t.Fatalf("cut at %d: %v, %d of %d frames, %d buffered", cut, err, len(got), len(want), d.Buffered())
		}
	}
}

func TestDecoderEveryPairOfSplitPoints(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	stream, want := testStream(rng, 8, 24)
	d := NewDecoder(DefaultMaxFrame)
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			got, err := feedChunks(t, d, stream, []int{i, j})
			if err != nil || !equalFrames(got, want) || d.Buffered() != 0 {
				t.Fatalf("cuts at %d, %d: %v, %d of %d frames", i, j, err, len(got), len(want))
			}
		}
	}
}

func TestDecoderRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	stream, want := testStream(rng, 500, 3000)
	for round := range 200 {
		var cuts []int
		for p := 0; ; {
			// Mostly small chunks, sometimes big ones spanning many frames, sometimes single bytes.
			switch rng.IntN(3) {
			case 0:
				p += 1 + rng.IntN(4)
			case 1:
				p += 1 + rng.IntN(4000)
			default:
				p += 1 + rng.IntN(40000)
			}
			if p >= len(stream) {
				break
			}
			cuts = append(cuts, p)
		}
		d := NewDecoder(DefaultMaxFrame)
		got, err := feedChunks(t, d, stream, cuts)
		if err != nil || !equalFrames(got, want) || d.Buffered() != 0 {
			t.Fatalf("round %d: %v, %d of %d frames", round, err, len(got), len(want))
		}
	}
	// One byte at a time.
	cuts := make([]int, len(stream)-1)
	for i := range cuts {
		cuts[i] = i + 1
	}
	if got, err := feedChunks(t, NewDecoder(DefaultMaxFrame), stream, cuts); err != nil || !equalFrames(got, want) {
		t.Fatalf("byte by byte: %v, %d of %d frames", err, len(got), len(want))
	}
}

func TestDecoderPartialTail(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	stream, want := testStream(rng, 3, 50)
	d := NewDecoder(DefaultMaxFrame)
	got, err := feedChunks(t, d, stream[:len(stream)-1], nil)
	if err != nil || !equalFrames(got, want[:2]) || d.Buffered() == 0 {
		t.Fatalf("%v, %d frames, %d buffered", err, len(got), d.Buffered())
	}
	got2, err := feedChunks(t, d, stream[len(stream)-1:], nil)
	if err != nil || !equalFrames(got2, want[2:]) || d.Buffered() != 0 {
		t.Fatalf("%v, %d frames, %d buffered", err, len(got2), d.Buffered())
	}
}

func TestDecoderCallbackError(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	stream, _ := testStream(rng, 10, 20)
	stop := errors.New("stop")
	for _, cut := range []int{0, 5, 15} {
		d := NewDecoder(DefaultMaxFrame)
		n := 0
		fn := func(Frame) error {
			n++
			if n == 3 {
				return stop
			}
			return nil
		}
		err := d.Feed(stream[:cut], fn)
		if err == nil {
			err = d.Feed(stream[cut:], fn)
		}
		if err != stop || n != 3 {
			t.Fatalf("cut %d: %v after %d frames", cut, err, n)
		}
	}
}

func TestDecoderMalformedLength(t *testing.T) {
	good, _ := testStream(rand.New(rand.NewPCG(1, 1)), 2, 10)
	bad := append(bytes.Clone(good), 0, 0, 0, 3, 1, 0, 0, 0, 0, 0)
	for cut := 0; cut <= len(bad); cut++ {
		d := NewDecoder(DefaultMaxFrame)
		got, err := feedChunks(t, d, bad, []int{cut})
		if !errors.Is(err, ErrMalformed) || len(got) != 2 {
			t.Fatalf("cut %d: %v after %d frames", cut, err, len(got))
		}
	}
}

func TestOps(t *testing.T) {
	seen := map[string]bool{}
	for o := range 256 {
		op := Op(o)
		if !op.Known() {
			if op.String() == "" || seen[op.String()] {
				t.Fatalf("op %d name %q", o, op.String())
			}
			continue
		}
		if seen[op.String()] {
			t.Fatalf("duplicate op name %q", op.String())
		}
		seen[op.String()] = true
	}
	if len(opNames) != 24 || Op(0x42).String() != "op(0x42)" {
		t.Fatalf("%d ops, %q", len(opNames), Op(0x42).String())
	}
}
