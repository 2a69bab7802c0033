package client

import (
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// TestHandshakeLowerVersion: a broker that answers Hello with a lower version than the client's
// (wire.MinProtocolVersion) is spoken to at that version: the dial succeeds and requests work.
func TestHandshakeLowerVersion(t *testing.T) {
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {})
	fb.version = wire.MinProtocolVersion
	c := dialT(t, fb.addr())
	if _, err := c.Ping(testCtx(t)); err != nil {
		t.Fatalf("ping at version %d: %v", wire.MinProtocolVersion, err)
	}
}
