package server_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// syncBuffer is a log destination safe for the event loops' concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestProtocolMismatchHint: a connection whose first bytes are HTTP, TLS or Kafka is closed with an
// error frame that says which protocol it looks like and where to go instead, the broker logs the
// same hint, and sluice_protocol_errors_total counts it by kind. Malformed Sluice stays "malformed".
func TestProtocolMismatchHint(t *testing.T) {
	var logs syncBuffer
	srv, _ := servertest.Start(t, nil, func(o *server.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	// A Kafka ApiVersions v3 request header: length, api key 18, version 3, correlation id 1, client id.
	kafka := []byte{0, 0, 0, 20, 0, 18, 0, 3, 0, 0, 0, 1, 0, 6, 'c', 'l', 'i', 'e', 'n', 't', 0, 0, 0, 0}
	// The start of a TLS ClientHello record.
	tlsHello := append([]byte{0x16, 0x03, 0x01, 0x00, 0xf8, 0x01, 0x00, 0x00, 0xf4, 0x03, 0x03}, make([]byte, 32)...)
	for _, tc := range []struct {
		name string
		in   []byte
		hint string
	}{
		{"http", []byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), "looks like HTTP"},
		{"tls", tlsHello, "looks like TLS"},
		{"kafka", kafka, "looks like Kafka: use the Kafka listener on --kafka-listen"},
	} {
		nc, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(tc.in); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(nc) // the broker answers and closes
		nc.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		f, _, err := wire.ParseFrame(got, wire.DefaultMaxFrame)
		if err != nil || f.Op != wire.OpError {
			t.Fatalf("%s: answer %q: %v", tc.name, got, err)
		}
		var eb wire.ErrorBody
		if err := eb.Decode(f.Body); err != nil || !strings.Contains(eb.Message, tc.hint) {
			t.Errorf("%s: error frame %q (%v), want the hint %q", tc.name, eb.Message, err, tc.hint)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "looks like Kafka") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the log line is written on the loop, maybe after the close
	}
	for _, hint := range []string{"protocol mismatch", "looks like HTTP", "looks like TLS", "looks like Kafka"} {
		if !strings.Contains(logs.String(), hint) {
			t.Errorf("the broker's log lacks %q:\n%s", hint, logs.String())
		}
	}
	var m bytes.Buffer
	srv.WriteMetrics(&m)
	for _, line := range []string{`sluice_protocol_errors_total{kind="http"} 1`, `sluice_protocol_errors_total{kind="tls"} 1`,
		`sluice_protocol_errors_total{kind="kafka"} 1`, `sluice_protocol_errors_total{kind="malformed"} 0`} {
		if !strings.Contains(m.String(), line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
}
