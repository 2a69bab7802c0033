package client

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/wire"
)

// testUsers writes a users file holding alice ("secret") and loads it.
func testUsers(t *testing.T) *auth.Users {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	if _, err := auth.AddUser(path, "alice", "secret", 0); err != nil {
		t.Fatal(err)
	}
	u, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestSCRAMAndPlainAgainstBroker dials a broker that holds users with WithSCRAM (both mechanisms)
// and WithPlain: the right password connects as the user (the principal reply inboxes are named
// after), a wrong one fails the handshake with CodeAuthFailed; bad options are refused at Dial.
func TestSCRAMAndPlainAgainstBroker(t *testing.T) {
	users := testUsers(t)
	b := startBroker(t, func(o *server.Options) { o.Authenticator = &auth.Authenticator{Users: users} })
	ctx := testCtx(t)
	for i, opt := range []func(user, pass string) Option{
		func(u, p string) Option { return WithSCRAM(u, p, "SCRAM-SHA-256") },
		func(u, p string) Option { return WithSCRAM(u, p, "SCRAM-SHA-512") },
		WithPlain,
	} {
		c := dialT(t, b.addr, opt("alice", "secret"))
		c.mu.Lock()
		p := c.principal
		c.mu.Unlock()
		if p != "alice" {
			t.Errorf("principal %q, want alice", p)
		}
		createTopic(t, c, fmt.Sprintf("t%d", i), 1)
		for _, up := range [][2]string{{"alice", "wrong"}, {"nobody", "secret"}} {
			if _, err := Dial(ctx, b.addr, WithLogger(quiet), opt(up[0], up[1])); !errors.Is(err, ErrHandshake) || !errors.Is(err, wire.CodeAuthFailed) {
				t.Errorf("%s/%s: %v, want a handshake error with CodeAuthFailed", up[0], up[1], err)
			}
		}
	}
	for _, opt := range []Option{
		WithSCRAM("alice", "secret", "SCRAM-SHA-1"),
		WithSCRAM("", "secret", "SCRAM-SHA-256"),
		WithPlain("alice", ""),
		func(o *Options) { WithPlain("alice", "secret")(o); o.AuthToken = "t" },
	} {
		if _, err := Dial(ctx, b.addr, opt); !errors.Is(err, ErrOptions) {
			t.Errorf("invalid SASL option accepted: %v", err)
		}
	}
}

// TestSCRAMServerSignatureChecked: a broker that accepts the proof but answers a server signature
// that does not verify (it does not hold the user's ServerKey) is refused by the client.
func TestSCRAMServerSignatureChecked(t *testing.T) {
	a := &auth.Authenticator{Users: testUsers(t)}
	var mu sync.Mutex
	convs := map[*fakeConn]auth.Conversation{}
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {
		if f.Op != wire.OpAuth {
			return
		}
		var m wire.Auth
		_ = m.Decode(f.Body)
		mu.Lock()
		conv := convs[fc]
		if conv == nil {
			conv, _ = a.Start(m.Mechanism)
			convs[fc] = conv
		}
		mu.Unlock()
		out, done, err := conv.Step(m.Payload)
		if err != nil {
			fc.write(wire.OpError, wire.FlagResponse, f.Corr, &wire.ErrorBody{Code: wire.CodeAuthFailed})
			return
		}
		if done {
			out[len(out)-3] ^= 1 // "v=...": flip a bit of the signature's base64
		}
		fc.reply(f, &wire.Auth{Mechanism: m.Mechanism, Payload: out})
	})
	_, err := Dial(testCtx(t), fb.addr(), WithLogger(quiet), WithSCRAM("alice", "secret", "SCRAM-SHA-256"))
	if !errors.Is(err, ErrHandshake) {
		t.Fatalf("a wrong server signature: %v, want a handshake error", err)
	}
}
