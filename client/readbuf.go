package client

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/wire"
)

// frameReader reads frames from a connection into one linear buffer and yields them in place.
//
// A read goes into the free tail of buf; every frame lying whole in buf[start:end] is yielded as a
// sub-slice of it. A frame cut by the end of a read stays where it is, and the next read appends to it,
// as long as the buffer has room for the whole frame from where it starts; only when it has not are the
// bytes received of it moved to the front (once). So a large delivery that arrives over several reads is
// not copied in user space at all when it starts in the first half of a readBufSize buffer, and at most
// once otherwise (wire.Decoder, which this replaces, copied every frame split across reads into its own
// buffer).
//
// The buffer starts at minReadBuf, which answers and small deliveries never outgrow; the first frame
// over half of it grows it to readBufSize (two default-sized 1 MiB deliveries), and one larger than that
// to the frame's size (at most the negotiated maximum frame). A buffer grown past readBufSize returns
// to it once empty.
//
// A consumer keeps a delivery where it arrived instead of copying it (lend): the buffer is then
// shared, reference-counted (readBuf), and the reader never writes over bytes before end while
// deliveries hold it: where it would start over at the front or move a partial frame there, it
// takes a fresh buffer from a pool instead (moving the partial frame into it, the one copy it would
// have made anyway), and the old one goes back to the pool when the last delivery in it is released.
// Reads into the free tail never touch what was lent.
//
// Used by the connection's reader goroutine only, but for the reference counts.
type frameReader struct {
	r        io.Reader
	maxFrame int
	cur      *readBuf // the buffer being read into; the reader holds one of its references
	buf      []byte   // cur.b
	start    int      // buf[start:end] is received and not yet yielded: a frame's beginning
	end      int
	moved    int64 // bytes moved to the front so far, for tests
	swapped  int64 // fresh buffers taken because the current one was lent, for tests
}

// readBuf is a frameReader's buffer, shared with the deliveries lent parts of it. refs counts its
// holders: the frameReader while it reads into it, and each delivery not yet released. Buffers of
// the two usual sizes are pooled: a consumer's connection takes one per readBufSize of deliveries
// it holds, and gives it back once they are read.
type readBuf struct {
	b    []byte
	refs atomic.Int32
}

// readBufPools hold free readBufs of minReadBuf and readBufSize bytes; larger ones are not kept.
var readBufPools = [2]sync.Pool{
	{New: func() any { return &readBuf{b: make([]byte, minReadBuf)} }},
	{New: func() any { return &readBuf{b: make([]byte, readBufSize)} }},
}

// getReadBuf returns a buffer of size bytes holding one reference.
func getReadBuf(size int) *readBuf {
	var rb *readBuf
	switch size {
	case minReadBuf:
		rb = readBufPools[0].Get().(*readBuf)
	case readBufSize:
		rb = readBufPools[1].Get().(*readBuf)
	default:
		rb = &readBuf{b: make([]byte, size)}
	}
	rb.refs.Store(1)
	return rb
}

// release drops one reference; the last returns the buffer to its pool.
func (rb *readBuf) release() {
	if rb.refs.Add(-1) != 0 {
		return
	}
	switch len(rb.b) {
	case minReadBuf:
		readBufPools[0].Put(rb)
	case readBufSize:
		readBufPools[1].Put(rb)
	}
}

func newFrameReader(r io.Reader, maxFrame int) *frameReader {
	rb := getReadBuf(minReadBuf)
	return &frameReader{r: r, maxFrame: maxFrame, cur: rb, buf: rb.b}
}

// lend hands out a reference to the buffer the frame being yielded lies in: its bytes stay as they
// are until the holder calls release. Called from run's fn only.
func (fr *frameReader) lend() *readBuf {
	fr.cur.refs.Add(1)
	return fr.cur
}

// lent reports whether a delivery holds part of the current buffer.
func (fr *frameReader) lent() bool { return fr.cur.refs.Load() > 1 }

// swap continues in a fresh buffer of size bytes, moving the partial frame buf[start:end] to its
// front, and drops the reader's reference to the old one.
func (fr *frameReader) swap(size int) {
	nb := getReadBuf(size)
	fr.end = copy(nb.b, fr.buf[fr.start:fr.end])
	fr.start = 0
	fr.cur.release()
	fr.cur, fr.buf = nb, nb.b
}

// run reads until the reader fails or fn returns an error, calling fn for every frame in order. A
// frame's body is valid only during the call. It returns the read error wrapped as "read: ..." (io.EOF
// reported as io.ErrUnexpectedEOF: the broker never ends a stream between frames on purpose), a
// framing error (wire.ErrMalformed, wire.ErrFrameTooLarge), or fn's error.
func (fr *frameReader) run(fn func(wire.Frame) error) error {
	for {
		n, rerr := fr.r.Read(fr.buf[fr.end:])
		fr.end += n
		for {
			f, size, err := wire.ParseFrame(fr.buf[fr.start:fr.end], fr.maxFrame)
			if errors.Is(err, wire.ErrTruncated) {
				break
			}
			if err != nil {
				return err
			}
			if err := fn(f); err != nil {
				return err
			}
			fr.start += size
		}
		if err := fr.makeRoom(); err != nil {
			return err
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				rerr = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read: %w", rerr)
		}
	}
}

// makeRoom prepares buf for the next read after every whole frame was yielded: empty, it starts over
// at the front (at readBufSize if a large frame grew it past); holding a partial frame, it keeps it in
// place if the frame fits from where it starts, else moves it to the front, into a grown buffer if the
// frame is over half of it (see frameReader).
func (fr *frameReader) makeRoom() error {
	if fr.start == fr.end {
		switch {
		case len(fr.buf) > readBufSize:
			fr.swap(readBufSize)
		case fr.lent():
			fr.swap(len(fr.buf))
			fr.swapped++
		}
		fr.start, fr.end = 0, 0
		return nil
	}
	need := wire.FrameHeaderSize // until the header is whole, room for the header
	if h, err := wire.ParseFrameHeader(fr.buf[fr.start:fr.end], fr.maxFrame); err == nil {
		need = h.Size
	} else if !errors.Is(err, wire.ErrTruncated) {
		return err
	}
	if fr.start+need <= len(fr.buf) {
		return nil
	}
	switch {
	case need > len(fr.buf)/2 && len(fr.buf) < readBufSize || need > len(fr.buf):
		fr.swap(max(need, readBufSize))
	case fr.lent():
		fr.swap(len(fr.buf))
		fr.swapped++
	default:
		fr.end = copy(fr.buf, fr.buf[fr.start:fr.end])
		fr.start = 0
	}
	fr.moved += int64(fr.end)
	return nil
}
