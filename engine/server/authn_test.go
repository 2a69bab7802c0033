package server

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// usersServer starts a broker whose Authenticator holds the users alice ("secret") and bob
// ("hunter2") from a users file, and the token "tok" for principal "svc"; alice may produce to
// "orders" only.
func usersServer(t *testing.T) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	for _, u := range [][2]string{{"alice", "secret"}, {"bob", "hunter2"}} {
		if _, err := auth.AddUser(path, u[0], u[1], 0); err != nil {
			t.Fatal(err)
		}
	}
	users, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := startServer(t, func(o *Options) {
		o.Authenticator = &auth.Authenticator{Users: users}
		o.Tokens = map[string]string{"tok": "svc"} // folded into the Authenticator
		o.ACL = Rules{{Principal: "alice", Actions: ActProduce | ActAdmin, Topic: "orders"}}
	})
	return s
}

// saslOverWire runs client mechanism m over OpAuth frames, one SASL message per frame each way. It
// returns the last Auth reply's payload, or the error frame that ended the exchange.
func saslOverWire(t *testing.T, c *rawConn, m sasl.Mechanism) ([]byte, *wire.ErrorBody) {
	t.Helper()
	sess, msg, err := m.Authenticate(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		corr := c.send(wire.OpAuth, 0, &wire.Auth{Mechanism: m.Name(), Payload: msg})
		f := c.mustNext()
		if f.Op == wire.OpError {
			var eb wire.ErrorBody
			if err := eb.Decode(f.Body); err != nil {
				t.Fatal(err)
			}
			return nil, &eb
		}
		var a wire.Auth
		if f.Corr != corr || a.Decode(f.Body) != nil || a.Mechanism != m.Name() {
			t.Fatalf("auth reply %v corr %d, want %d", f.Op, f.Corr, corr)
		}
		done, next, err := sess.Challenge(a.Payload)
		if err != nil {
			t.Fatalf("the client refused the broker's %q: %v", a.Payload, err)
		}
		if done {
			return a.Payload, nil
		}
		msg = next
	}
	t.Fatal("the exchange did not end")
	return nil, nil
}

// TestAuthSCRAMAndPlain authenticates native connections with SCRAM-SHA-256, SCRAM-SHA-512 and
// PLAIN (franz-go's SASL clients, over OpAuth frames): the right password authenticates as the user
// (the ACL then applies to that principal), a wrong one or an unknown user is CodeAuthFailed and
// the connection closes; SCRAM's failure carries e=invalid-proof.
func TestAuthSCRAMAndPlain(t *testing.T) {
	s := usersServer(t)
	mechs := map[string]func(user, pass string) sasl.Mechanism{
		auth.MechSCRAM256: func(u, p string) sasl.Mechanism { return scram.Auth{User: u, Pass: p}.AsSha256Mechanism() },
		auth.MechSCRAM512: func(u, p string) sasl.Mechanism { return scram.Auth{User: u, Pass: p}.AsSha512Mechanism() },
		auth.MechPlain:    func(u, p string) sasl.Mechanism { return plain.Auth{User: u, Pass: p}.AsMechanism() },
	}
	for name, mech := range mechs {
		t.Run(name, func(t *testing.T) {
			c := dial(t, s)
			c.hello()
			if code := c.do(wire.OpListTopics, nil); code != wire.CodeAuthFailed {
				t.Fatalf("before auth: %v", code)
			}
			final, eb := saslOverWire(t, c, mech("alice", "secret"))
			if eb != nil {
				t.Fatalf("alice: %v", eb.Err())
			}
			if name == auth.MechPlain && string(final) != "alice" {
				t.Errorf("PLAIN's reply names %q, want alice", final)
			}
			if code := c.do(wire.OpCreateTopic, &wire.TopicConfig{Name: "orders", Partitions: 1}); code != wire.CodeOK && code != wire.CodeTopicExists {
				t.Fatalf("alice creates orders: %v", code)
			}
			if code := c.do(wire.OpProduce, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("orders"), Batches: batchOf(t, 1, "o")}); code != wire.CodeOK {
				t.Fatalf("alice produces to orders: %v", code)
			}
			if code := c.do(wire.OpProduce, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("payroll"), Batches: batchOf(t, 1, "p")}); code != wire.CodeNotAuthorized {
				t.Fatalf("alice produces to payroll: %v", code)
			}
			for _, up := range [][2]string{{"alice", "hunter2"}, {"mallory", "secret"}} {
				c := dial(t, s)
				c.hello()
				_, eb := saslOverWire(t, c, mech(up[0], up[1]))
				if eb == nil || eb.Code != wire.CodeAuthFailed {
					t.Fatalf("%s/%s: %v, want CodeAuthFailed", up[0], up[1], eb)
				}
				if name != auth.MechPlain && !strings.Contains(eb.Message, "e=invalid-proof") {
					t.Errorf("%s/%s: message %q, want e=invalid-proof", up[0], up[1], eb.Message)
				}
				if _, err := c.next(); err == nil {
					t.Errorf("%s/%s: the connection stays open after a failed exchange", up[0], up[1])
				}
			}
		})
	}
}

// TestAuthExchangeRules: the token mechanism still works beside users (Options.Tokens folded in);
// an unknown mechanism, and a change of mechanism in the middle of a SCRAM exchange, are
// CodeAuthFailed and close the connection; Tokens that differ from the Authenticator's are refused.
func TestAuthExchangeRules(t *testing.T) {
	s := usersServer(t)
	c := dial(t, s)
	c.hello()
	var a wire.Auth
	c.expectReply(c.send(wire.OpAuth, 0, &wire.Auth{Mechanism: "token", Payload: []byte("tok")}), &a)
	if string(a.Payload) != "svc" {
		t.Fatalf("token reply names %q", a.Payload)
	}

	c = dial(t, s)
	c.hello()
	c.send(wire.OpAuth, 0, &wire.Auth{Mechanism: "GSSAPI", Payload: []byte("x")})
	c.expectClosedWith(wire.CodeAuthFailed)

	c = dial(t, s)
	c.hello()
	sess, first, _ := scram.Auth{User: "alice", Pass: "secret"}.AsSha256Mechanism().Authenticate(context.Background(), "")
	c.expectReply(c.send(wire.OpAuth, 0, &wire.Auth{Mechanism: auth.MechSCRAM256, Payload: first}), &a)
	_, final, err := sess.Challenge(a.Payload)
	if err != nil {
		t.Fatal(err)
	}
	c.send(wire.OpAuth, 0, &wire.Auth{Mechanism: auth.MechSCRAM512, Payload: final})
	c.expectClosedWith(wire.CodeAuthFailed)

	o := Options{Tokens: map[string]string{"a": "x"}, Authenticator: &auth.Authenticator{Tokens: map[string]string{"b": "y"}}}
	o.setDefaults()
	if o.Validate() == nil {
		t.Error("Tokens and Authenticator.Tokens that differ are accepted")
	}
}

// TestAuthPlainOffLoop: a PLAIN step (a PBKDF2 against a user) runs off the event loop, its frame
// parked meanwhile: while it is held, another connection on the same (only) loop is served, and
// the parked exchange then completes in its place on its connection.
func TestAuthPlainOffLoop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if _, err := auth.AddUser(path, "alice", "secret", 0); err != nil {
		t.Fatal(err)
	}
	users, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	orig := authStepOffLoop
	authStepOffLoop = func(c auth.Conversation, in []byte) ([]byte, bool, error) {
		close(entered)
		<-release
		return c.Step(in)
	}
	defer func() { authStepOffLoop = orig }()
	s, _ := startServer(t, func(o *Options) {
		o.Loops = 1
		o.Authenticator = &auth.Authenticator{Users: users}
	})
	a := dial(t, s)
	a.hello()
	corr := a.send(wire.OpAuth, 0, &wire.Auth{Mechanism: auth.MechPlain, Payload: []byte("\x00alice\x00secret")})
	a.send(wire.OpPing, 0, &wire.Ping{Nonce: 7}) // waits behind the parked Auth
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the PLAIN step did not run off the loop")
	}
	b := dial(t, s)
	b.hello() // answered by the loop while alice's step is held
	var p wire.Ping
	b.expectReply(b.send(wire.OpPing, 0, &wire.Ping{Nonce: 9}), &p)
	close(release)
	var ar wire.Auth
	a.expectReply(corr, &ar)
	if string(ar.Payload) != "alice" {
		t.Fatalf("PLAIN reply names %q", ar.Payload)
	}
	a.expectReply(corr+1, &p)
	if p.Nonce != 7 {
		t.Fatalf("ping answered with nonce %d", p.Nonce)
	}
	if code := a.do(wire.OpListTopics, nil); code != wire.CodeOK {
		t.Fatalf("after PLAIN: %v", code)
	}
}
