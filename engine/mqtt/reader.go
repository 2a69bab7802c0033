package mqtt

import (
	"errors"
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The packet reader finds packet boundaries in a connection's byte stream; the codec
// (github.com/mochi-mqtt/server/v2/packets) decodes the packet it delimits. An MQTT packet is:
//
//	 0        1                    1+k
//	+--------+--------...---------+------------------------------+
//	| type   | remaining length   | variable header and payload  |
//	| flags  | varint, k = 1..4   | (remaining length bytes)     |
//	+--------+--------...---------+------------------------------+
//
// The remaining length is 7 bits a byte, least significant group first, high bit set on every
// byte but the last (MQTT 1.5.5); at most 4 bytes, so at most 268,435,455. A fifth byte is
// malformed, as is a length whose packet would exceed the listener's maximum packet size: both
// close that connection.

var (
	// ErrMalformed is a packet the reader or codec cannot parse.
	ErrMalformed = errors.New("mqtt: malformed packet")
	// ErrTooLarge is a packet larger than the maximum packet size.
	ErrTooLarge = errors.New("mqtt: packet too large")
)

// frameSize reads the fixed header at the start of b and returns the whole packet's size in bytes
// and the fixed header's (1 to 5), or 0 when b holds only part of the fixed header. maxPacket bounds it: a packet declaring more is
// ErrTooLarge, however little of it has arrived. It does not allocate.
func frameSize(b []byte, maxPacket int) (n, hlen int, err error) {
	rem, shift := 0, 0
	for i := 1; ; i++ {
		if i > 4 {
			return 0, 0, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrMalformed)
		}
		if i >= len(b) {
			return 0, 0, nil // the length is not all here yet
		}
		c := b[i]
		rem |= int(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			n = i + 1 + rem
			if n > maxPacket {
				return 0, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, maxPacket)
			}
			return n, i + 1, nil
		}
	}
}

// readFrame finds the first packet in b. It returns the fixed header's first byte, the packet's
// body (a slice of b: its remaining-length bytes) and n, the packet's whole size in bytes; n is 0
// when b holds only the start of a packet. Errors are frameSize's. It does not allocate.
func readFrame(b []byte, maxPacket int) (hdr byte, body []byte, n int, err error) {
	if len(b) < 2 {
		return 0, nil, 0, nil
	}
	n, hlen, err := frameSize(b, maxPacket)
	if n == 0 || err != nil || len(b) < n {
		return 0, nil, 0, err
	}
	return b[0], b[hlen:n], n, nil
}

// decodePacket decodes one packet's body with the codec, for a connection speaking protocol
// version (3, 4 or 5; 0 before CONNECT, which carries it). The packet's byte slices (payload, will
// payload, password, ...) are views into body. The codec's own errors (packets.Code) are wrapped
// in ErrMalformed; a panic in it (an index past the body's end) is one too.
func decodePacket(hdr byte, body []byte, version byte) (*packets.Packet, error) {
	pk := &packets.Packet{}
	if err := decodePacketInto(pk, hdr, body, version); err != nil {
		return nil, err
	}
	return pk, nil
}

// decodePacketInto is decodePacket into a packet the caller owns (it is reset first): the
// connection decodes every PUBLISH and acknowledgement into one it reuses.
func decodePacketInto(pk *packets.Packet, hdr byte, body []byte, version byte) (err error) {
	*pk = packets.Packet{ProtocolVersion: version}
	if err := pk.FixedHeader.Decode(hdr); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	pk.FixedHeader.Remaining = len(body)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Subscribe:
		err = pk.SubscribeDecode(body)
	case packets.Unsubscribe:
		err = pk.UnsubscribeDecode(body)
	case packets.Pingreq:
		err = pk.PingreqDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Auth:
		err = pk.AuthDecode(body)
	default: // CONNACK, SUBACK, UNSUBACK, PINGRESP and type 0 are the server's to send
		err = fmt.Errorf("packet type %d from a client", pk.FixedHeader.Type)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}
