package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine/auth"
)

// TestAsyncRequestsOwnTheirBytes: a request answered off the loop (a SASL step here; group requests
// likewise) must not read the connection's input buffer after the loop has moved on: gnet reuses it.
// The test overwrites the input as soon as the frame is served; the step must still see the secret.
func TestAsyncRequestsOwnTheirBytes(t *testing.T) {
	s := fuzzServer(t)
	s.auth.Store(&authState{authn: &auth.Authenticator{Tokens: map[string]string{"secret-a": "alice"}}, acl: s.opts.ACL})
	m := &memTransport{}
	c := newConn(s, m)
	defer c.close()
	handshake := kmsg.NewPtrSASLHandshakeRequest()
	handshake.SetVersion(1)
	handshake.Mechanism = "PLAIN"
	m.in = appendRequest(nil, 1, handshake)
	c.onTraffic()
	sa := kmsg.NewPtrSASLAuthenticateRequest()
	sa.SASLAuthBytes = []byte("\x00alice\x00secret-a")
	frame := appendRequest(nil, 2, sa)
	m.in = frame
	c.onTraffic()
	clear(frame) // what gnet does to its buffer when the next bytes arrive
	for deadline := time.Now().Add(10 * time.Second); !c.authed && !c.dead && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		c.flags.Store(flagDone)
		c.onTraffic()
	}
	if !c.authed || c.principal != "alice" {
		t.Fatalf("authenticated %v as %q (closed %v)", c.authed, c.principal, c.dead)
	}
}
