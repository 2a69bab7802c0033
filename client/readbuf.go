package client

import (
	"errors"
	"fmt"
	"io"

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
// Used by the connection's reader goroutine only.
type frameReader struct {
	r        io.Reader
	maxFrame int
	buf      []byte
	start    int // buf[start:end] is received and not yet yielded: a frame's beginning
	end      int
	moved    int64 // bytes moved to the front so far, for tests
}

func newFrameReader(r io.Reader, maxFrame int) *frameReader {
	return &frameReader{r: r, maxFrame: maxFrame, buf: make([]byte, minReadBuf)}
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
		fr.start, fr.end = 0, 0
		if len(fr.buf) > readBufSize {
			fr.buf = make([]byte, readBufSize)
		}
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
	if need > len(fr.buf)/2 && len(fr.buf) < readBufSize || need > len(fr.buf) {
		nb := make([]byte, max(need, readBufSize))
		fr.end = copy(nb, fr.buf[fr.start:fr.end])
		fr.buf = nb
	} else {
		fr.end = copy(fr.buf, fr.buf[fr.start:fr.end])
	}
	fr.moved += int64(fr.end)
	fr.start = 0
	return nil
}
