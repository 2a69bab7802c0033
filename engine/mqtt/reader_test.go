package mqtt

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestReadFrame: packet boundaries, a partial packet, an oversized remaining length and a fifth
// length byte.
func TestReadFrame(t *testing.T) {
	pkt := []byte{0xC0, 0x00} // PINGREQ
	if _, _, n, err := readFrame(pkt[:1], 100); n != 0 || err != nil {
		t.Fatalf("partial: n %d err %v", n, err)
	}
	if hdr, body, n, err := readFrame(append(pkt, 0xC0), 100); hdr != 0xC0 || len(body) != 0 || n != 2 || err != nil {
		t.Fatalf("pingreq: %x %v %d %v", hdr, body, n, err)
	}
	big := []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F} // PUBLISH of 268,435,455 bytes: refused before any arrives
	if _, _, _, err := readFrame(big, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	five := []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}
	if _, _, _, err := readFrame(five, maxMQTTPacket); !errors.Is(err, ErrMalformed) {
		t.Fatalf("five length bytes: %v", err)
	}
	nonMinimal := []byte{0xC0, 0x80, 0x00} // a zero length in two bytes
	if _, body, n, err := readFrame(nonMinimal, 100); n != 3 || len(body) != 0 || err != nil {
		t.Fatalf("non-minimal length: %d %v", n, err)
	}
}

// FuzzPacketReader: the reader finds the same packets whatever points the input is split at, and
// neither it nor the codec panics on any input.
func FuzzPacketReader(f *testing.F) {
	f.Add([]byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x03, 'a', 'b', 'c'}, uint64(1))
	f.Add([]byte{0x30, 0x07, 0x00, 0x01, 'a', 'h', 'e', 'l', 'o', 0xC0, 0x00}, uint64(2))
	f.Add([]byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x01}, uint64(3))
	f.Add([]byte{0x82, 0x04, 0x00, 0x01, 0x00, 0x01}, uint64(4))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		const limit = 4096
		whole := readAll(in, limit, nil)
		rng := rand.New(rand.NewPCG(seed, seed))
		split := readAll(in, limit, rng)
		if len(whole) != len(split) {
			t.Fatalf("%d packets whole, %d split", len(whole), len(split))
		}
		for i := range whole {
			if !bytes.Equal(whole[i], split[i]) {
				t.Fatalf("packet %d differs", i)
			}
			for _, v := range []byte{0, 4, 5} {
				_, _ = decodePacket(whole[i][0], whole[i][1:], v) // must not panic
			}
		}
	})
}

// readAll feeds in to the reader in pieces (split at random points when rng is set, else whole)
// as a connection's input buffer grows, and returns each packet found (header byte then body),
// stopping at the first error.
func readAll(in []byte, limit int, rng *rand.Rand) [][]byte {
	var out [][]byte
	var buf []byte
	for len(in) > 0 {
		n := len(in)
		if rng != nil {
			n = 1 + rng.IntN(len(in))
		}
		buf, in = append(buf, in[:n]...), in[n:]
		for {
			hdr, body, size, err := readFrame(buf, limit)
			if err != nil {
				return out
			}
			if size == 0 {
				break
			}
			out = append(out, append([]byte{hdr}, body...))
			buf = buf[size:]
		}
	}
	return out
}
