package client

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// chunkReader hands out its data in reads of random sizes between 1 and max bytes.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rng.IntN(r.max))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// TestFrameReaderSplits: frames of every size class (answers, small and 1 MiB deliveries, one larger
// than the grown buffer) come out whole and in order however the stream is cut into reads, and no byte
// is moved to make room more than once.
func TestFrameReaderSplits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	var want [][]byte
	for i := range 200 {
		size := []int{0, 30, 900, 20 << 10, 1 << 20}[rng.IntN(5)]
		if i == 100 {
			size = 3 << 20 // above readBufSize: grows the buffer, which shrinks back afterwards
		}
		body := make([]byte, size)
		for j := range body {
			body[j] = byte(i + j)
		}
		var start int
		stream, start = wire.BeginFrame(stream, wire.OpDeliver, 0, uint32(i))
		stream = wire.EndFrame(append(stream, body...), start)
		want = append(want, body)
	}
	for _, maxRead := range []int{7, 4 << 10, 200 << 10, 4 << 20} {
		fr := newFrameReader(&chunkReader{data: stream, rng: rng, max: maxRead}, wire.DefaultMaxFrame)
		got := 0
		err := fr.run(func(f wire.Frame) error {
			if f.Corr != uint32(got) || !bytes.Equal(f.Body, want[got]) {
				t.Fatalf("reads up to %d: frame %d: corr %d, %d bytes, want frame %d of %d bytes", maxRead, got, f.Corr, len(f.Body), got, len(want[got]))
			}
			got++
			return nil
		})
		if !errors.Is(err, io.ErrUnexpectedEOF) || got != len(want) {
			t.Errorf("reads up to %d: %d frames, ended with %v; want all %d, then io.ErrUnexpectedEOF", maxRead, got, err, len(want))
		}
		// A byte is moved at most once (a moved frame fits from the front). With reads the size of a
		// socket's typical yield (up to 200 KiB) a frame rarely needs moving at all.
		if fr.moved > int64(len(stream)) || maxRead <= 200<<10 && fr.moved > int64(len(stream))/10 {
			t.Errorf("reads up to %d: moved %d bytes of %d received", maxRead, fr.moved, len(stream))
		}
		if len(fr.buf) > readBufSize {
			t.Errorf("reads up to %d: buffer %d bytes after the large frame, want back at %d", maxRead, len(fr.buf), readBufSize)
		}
		t.Logf("reads up to %d: moved %.1f%% of %d bytes", maxRead, 100*float64(fr.moved)/float64(len(stream)), len(stream))
	}
}

// TestFrameReaderErrors: a frame over the maximum is refused as such, an error from the handler
// stops reading and is returned as is.
func TestFrameReaderErrors(t *testing.T) {
	var stream []byte
	stream, start := wire.BeginFrame(stream, wire.OpDeliver, 0, 1)
	stream = wire.EndFrame(append(stream, make([]byte, 100<<10)...), start)
	fr := newFrameReader(bytes.NewReader(stream), wire.MinMaxFrame)
	if err := fr.run(func(wire.Frame) error { return nil }); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Errorf("oversized frame: %v, want wire.ErrFrameTooLarge", err)
	}
	stop := errors.New("stop")
	fr = newFrameReader(bytes.NewReader(stream), wire.DefaultMaxFrame)
	if err := fr.run(func(wire.Frame) error { return stop }); err != stop {
		t.Errorf("handler error: %v, want it returned as is", err)
	}
}

// TestFrameReaderLentFramesStayPut: a frame lent out (as a consumer keeps a delivery where it
// arrived instead of copying it) keeps its bytes while the reader goes on reading the later frames of
// a stream cut into random reads: the reader takes a fresh buffer rather than start over at the
// front or move a partial frame there while anything in its buffer is lent. Every buffer's count
// returns to zero once the frames are released.
func TestFrameReaderLentFramesStayPut(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var stream []byte
	var want [][]byte
	for i := range 300 {
		body := make([]byte, []int{10, 900, 20 << 10, 300 << 10}[rng.IntN(4)])
		for j := range body {
			body[j] = byte(i*7 + j)
		}
		var start int
		stream, start = wire.BeginFrame(stream, wire.OpDeliver, 0, uint32(i))
		stream = wire.EndFrame(append(stream, body...), start)
		want = append(want, body)
	}
	for _, maxRead := range []int{100, 16 << 10, 1 << 20} {
		fr := newFrameReader(&chunkReader{data: stream, rng: rng, max: maxRead}, wire.DefaultMaxFrame)
		type loan struct {
			i    int
			body []byte
			rb   *readBuf
		}
		var loans []loan
		bufs := map[*readBuf]bool{}
		check := func(l loan) {
			if !bytes.Equal(l.body, want[l.i]) {
				t.Fatalf("reads up to %d: lent frame %d was overwritten", maxRead, l.i)
			}
			l.rb.release()
		}
		got := 0
		err := fr.run(func(f wire.Frame) error {
			got++
			if int(f.Corr)%3 != 2 { // keep two frames in three
				loans = append(loans, loan{int(f.Corr), f.Body, fr.lend()})
				bufs[fr.cur] = true
			}
			if len(loans) > 20 { // release the oldest, as a consumer reads on
				check(loans[0])
				loans = loans[1:]
			}
			return nil
		})
		if got != len(want) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("reads up to %d: %d frames of %d, err %v", maxRead, got, len(want), err)
		}
		for _, l := range loans {
			check(l)
		}
		if fr.swapped == 0 {
			t.Fatalf("reads up to %d: the reader never needed a fresh buffer: the test lends too little", maxRead)
		}
		for rb := range bufs {
			if n := rb.refs.Load(); rb != fr.cur && n != 0 {
				t.Fatalf("reads up to %d: a buffer left with %d references", maxRead, n)
			}
		}
	}
}
