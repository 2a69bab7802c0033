package server

import (
	"bytes"
	"encoding/binary"
	"sync/atomic"

	"github.com/sluicemq/sluice/wire"
)

// Protocol error kinds, the label of sluice_protocol_errors_total: a peer speaking another protocol
// on the Sluice port (HTTP, TLS, Kafka), or a Sluice peer breaking the protocol (malformed).
const (
	kindMalformed = iota
	kindHTTP
	kindTLS
	kindKafka
	numProtocolKinds
)

var protocolKindNames = [numProtocolKinds]string{"malformed", "http", "tls", "kafka"}

// protocolHints say what to do when a connection's first bytes are another protocol's.
var protocolHints = [numProtocolKinds]string{
	kindHTTP:  "looks like HTTP: the Sluice port speaks the Sluice protocol; HTTP is served on the metrics address (--metrics)",
	kindTLS:   "looks like TLS: use the TLS listener on --tls-listen (clients: sluice --tls)",
	kindKafka: "looks like Kafka: use the Kafka listener on --kafka-listen",
}

// protocolErrors counts connections closed for protocol errors, by kind. Bumped only when a
// connection is closed, never on the request path.
type protocolErrors [numProtocolKinds]atomic.Uint64

// sniffProtocol tells from the first bytes of a connection whose first frame is not a Sluice Hello
// which other protocol the peer speaks: kindHTTP for a request line ("GET /", "POST /", ...), kindTLS
// for a TLS handshake record (content type 22, version 3.x), kindKafka for a Kafka request header
// (a length under 100 MiB, then a 16-bit API key below 256 where the Sluice op byte is 0, which no
// op uses, and a small API version), else kindMalformed. b holds at least wire.FrameHeaderSize bytes.
func sniffProtocol(b []byte) int {
	for _, m := range [...]string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "PRI * HTTP/2"} {
		if bytes.HasPrefix(b, []byte(m[:min(len(m), len(b))])) {
			return kindHTTP
		}
	}
	if b[0] == 0x16 && b[1] == 0x03 {
		return kindTLS
	}
	if n := binary.BigEndian.Uint32(b); n >= 8 && n < 100<<20 && b[4] == 0 && b[6] == 0 {
		return kindKafka
	}
	return kindMalformed
}

// mismatch closes a connection whose first frame is not a Hello, with the hint that sniffProtocol's
// verdict on its first bytes gives, logged at warning level (another protocol on the Sluice port is
// a set-up mistake an operator should see). It reports false, doing nothing, when the bytes look
// like no other protocol: the caller then reports the frame error as usual.
func (ss *session) mismatch(hb []byte) bool {
	kind := sniffProtocol(hb)
	if kind == kindMalformed {
		return false
	}
	ss.srv.protoErrs[kind].Add(1)
	ss.srv.log.Warn("protocol mismatch", "remote", ss.c.RemoteAddr(), "hint", protocolHints[kind])
	ss.srv.stats.ProtocolErrors.Add(1)
	ss.out = wire.AppendError(ss.out, 0, wire.CodeMalformedFrame, "not the Sluice protocol: "+protocolHints[kind])
	ss.dead = true
	return true
}
