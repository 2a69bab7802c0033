package client

import (
	"errors"
	"slices"
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

// errFakeClose, returned from a fake connection's frame handler, closes the connection.
var errFakeClose = errors.New("fake broker: close")

// TestHandshakeFallsBackToVersion1: a broker that speaks only version 1 and refuses the client's
// version with CodeUnsupportedVersion (brokers before version 2) is dialled again announcing
// version 1, and the connection works.
func TestHandshakeFallsBackToVersion1(t *testing.T) {
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {})
	fb.version, fb.only = 1, 1
	c := dialT(t, fb.addr())
	if _, err := c.Ping(testCtx(t)); err != nil {
		t.Fatalf("ping: %v", err)
	}
	fb.mu.Lock()
	got := slices.Clone(fb.helloVersions)
	fb.mu.Unlock()
	if !slices.Equal(got, []uint16{wire.ProtocolVersion, 1}) {
		t.Fatalf("hello versions %v, want [%d 1]", got, wire.ProtocolVersion)
	}
}
