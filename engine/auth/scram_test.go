package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// testUsers returns a store holding alice (password "secret") and bob ("hunter2") with both
// SCRAM verifiers, built through ParseUsers(Marshal()) so the file format is on the path.
func testUsers(t *testing.T) *Users {
	t.Helper()
	u := &Users{users: map[string]map[string]Credential{}}
	for name, pass := range map[string]string{"alice": "secret", "bob": "hunter2", "c,d=e": "pw"} {
		u.users[name] = map[string]Credential{}
		for _, m := range scramMechs {
			c, err := NewCredential(m, pass, 0)
			if err != nil {
				t.Fatal(err)
			}
			u.users[name][m] = c
		}
	}
	parsed, err := ParseUsers(strings.NewReader(string(u.Marshal())))
	if err != nil {
		t.Fatal(err)
	}
	return parsed
}

// TestSCRAMRFC7677 runs RFC 7677 section 3's SCRAM-SHA-256 example: user "user", password
// "pencil", the example's salt, iterations and nonces; every server message must be the RFC's.
func TestSCRAMRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	c, err := deriveCredential(MechSCRAM256, "pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	u := &Users{users: map[string]map[string]Credential{"user": {MechSCRAM256: c}}}
	u.setMockKey()
	a := &Authenticator{Users: u}
	conv, err := a.Start(MechSCRAM256)
	if err != nil {
		t.Fatal(err)
	}
	conv.(*scramConv).serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	out, done, err := conv.Step([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
	if err != nil || done {
		t.Fatalf("client-first: %v done=%v", err, done)
	}
	if want := "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"; string(out) != want {
		t.Fatalf("server-first %q, want %q", out, want)
	}
	out, done, err = conv.Step([]byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if err != nil || !done {
		t.Fatalf("client-final: %v done=%v", err, done)
	}
	if want := "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; string(out) != want {
		t.Fatalf("server-final %q, want %q", out, want)
	}
	if conv.Principal() != "user" {
		t.Fatalf("principal %q", conv.Principal())
	}
}

// exchange runs a franz-go SASL client mechanism against a server conversation from a, the way a
// Kafka client drives SaslAuthenticate. It returns the server's principal and the first error
// from either side.
func exchange(t *testing.T, a *Authenticator, m sasl.Mechanism) (string, error) {
	t.Helper()
	conv, err := a.Start(m.Name())
	if err != nil {
		return "", err
	}
	sess, msg, err := m.Authenticate(context.Background(), "127.0.0.1:9092")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		out, done, err := conv.Step(msg)
		if err != nil {
			return "", err
		}
		cdone, next, cerr := sess.Challenge(out)
		if cerr != nil {
			t.Fatalf("the client refused the server's %q: %v", out, cerr)
		}
		if done {
			if !cdone {
				t.Fatal("server done, client not")
			}
			return conv.Principal(), nil
		}
		if cdone {
			t.Fatal("client done, server not")
		}
		msg = next
	}
	t.Fatal("exchange did not finish")
	return "", nil
}

// TestSCRAMFranzGo runs franz-go's SCRAM client (what Kafka clients in Go use) against the server
// for both mechanisms: the right password authenticates (and the client checks the server's
// signature), a wrong one and an unknown user fail with ErrFailed alike; a name with ',' and '='
// travels escaped.
func TestSCRAMFranzGo(t *testing.T) {
	a := &Authenticator{Users: testUsers(t)}
	for _, mech := range []string{MechSCRAM256, MechSCRAM512} {
		m := func(user, pass string) sasl.Mechanism {
			au := scram.Auth{User: user, Pass: pass}
			if mech == MechSCRAM256 {
				return au.AsSha256Mechanism()
			}
			return au.AsSha512Mechanism()
		}
		t.Run(mech, func(t *testing.T) {
			for _, tc := range []struct {
				user, pass string
				ok         bool
			}{
				{"alice", "secret", true},
				{"bob", "hunter2", true},
				{"c,d=e", "pw", true},
				{"alice", "hunter2", false},
				{"alice", "", false},
				{"mallory", "secret", false},
			} {
				if tc.pass == "" {
					continue // franz-go refuses an empty password itself
				}
				p, err := exchange(t, a, m(tc.user, tc.pass))
				if tc.ok && (err != nil || p != tc.user) {
					t.Errorf("%s/%s: principal %q err %v", tc.user, tc.pass, p, err)
				}
				if !tc.ok && (!errors.Is(err, ErrFailed) || err.Error() != ErrFailed.Error()) {
					t.Errorf("%s/%s: err %v, want exactly ErrFailed", tc.user, tc.pass, err)
				}
			}
		})
	}
}

// TestSCRAMUnknownUserLooksKnown checks that an unknown user's server-first looks like a known
// user's (a salt of the same length, the default iterations), that its salt is the same on every
// attempt (a changing salt would tell it apart), and that its failure is a wrong password's.
func TestSCRAMUnknownUserLooksKnown(t *testing.T) {
	a := &Authenticator{Users: testUsers(t)}
	first := func(user string) (salt string, iter string, out []byte, conv Conversation) {
		conv, err := a.Start(MechSCRAM256)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err = conv.Step([]byte("n,,n=" + user + ",r=abc"))
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		parts := strings.Split(string(out), ",")
		return parts[1], parts[2], out, conv
	}
	ks, ki, _, _ := first("alice")
	us1, ui, _, conv := first("nobody")
	us2, _, _, _ := first("nobody")
	if us1 != us2 {
		t.Errorf("unknown user's salt changes: %s then %s", us1, us2)
	}
	if len(us1) != len(ks) || ui != ki {
		t.Errorf("unknown user's server-first (%s,%s) differs in shape from a known one's (%s,%s)", us1, ui, ks, ki)
	}
	proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
	out, _, err := conv.Step([]byte("c=biws,r=" + conv.(*scramConv).nonce + ",p=" + proof))
	if !errors.Is(err, ErrFailed) || string(out) != "e=invalid-proof" {
		t.Fatalf("unknown user's final: %q %v", out, err)
	}
}

// TestSCRAMMalformedAndReplay feeds the server messages that break the RFC, a nonce that is not
// the server's, a proof for another exchange, and steps after the end.
func TestSCRAMMalformedAndReplay(t *testing.T) {
	a := &Authenticator{Users: testUsers(t)}
	for _, tc := range []struct {
		name, msg string
		want      error
	}{
		{"empty", "", ErrMalformed},
		{"no gs2 header", "n=alice,r=abc", ErrMalformed},
		{"bad flag", "x,,n=alice,r=abc", ErrMalformed},
		{"channel binding", "p=tls-unique,,n=alice,r=abc", ErrFailed},
		{"other authzid", "n,a=bob,n=alice,r=abc", ErrFailed},
		{"mandatory extension", "n,,m=x,n=alice,r=abc", ErrMalformed},
		{"no nonce", "n,,n=alice", ErrMalformed},
		{"empty nonce", "n,,n=alice,r=", ErrMalformed},
		{"nonce with space", "n,,n=alice,r=a b", ErrMalformed},
		{"bad escape", "n,,n=al=2Xice,r=abc", ErrMalformed},
		{"empty user", "n,,n=,r=abc", ErrMalformed},
		{"delegation token", "n,,n=alice,r=abc,tokenauth=true", ErrFailed},
		{"too long", "n,,n=alice,r=" + strings.Repeat("a", 5000), ErrMalformed},
	} {
		conv, _ := a.Start(MechSCRAM256)
		if _, _, err := conv.Step([]byte(tc.msg)); !errors.Is(err, tc.want) {
			t.Errorf("client-first %s: err %v, want %v", tc.name, err, tc.want)
		}
		if _, _, err := conv.Step([]byte("n,,n=alice,r=abc")); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: a step after a failure: %v, want ErrMalformed", tc.name, err)
		}
	}

	// A good client-first, then bad finals.
	m := scram.Auth{User: "alice", Pass: "secret"}.AsSha256Mechanism()
	start := func() (Conversation, sasl.Session, []byte) {
		conv, _ := a.Start(MechSCRAM256)
		sess, cf, _ := m.Authenticate(context.Background(), "")
		out, _, err := conv.Step(cf)
		if err != nil {
			t.Fatal(err)
		}
		_, final, err := sess.Challenge(out)
		if err != nil {
			t.Fatal(err)
		}
		return conv, sess, final
	}
	for _, tc := range []struct {
		name   string
		edit   func(string) string
		want   error
		answer string
	}{
		{"no proof", func(s string) string { return s[:strings.LastIndex(s, ",p=")] }, ErrMalformed, "e=invalid-encoding"},
		{"proof not base64", func(s string) string { return s[:strings.LastIndex(s, ",p=")] + ",p=!!" }, ErrMalformed, "e=invalid-encoding"},
		{"short proof", func(s string) string { return s[:strings.LastIndex(s, ",p=")] + ",p=AAAA" }, ErrMalformed, "e=invalid-encoding"},
		{"binding", func(s string) string { return "c=eSws" + s[len("c=biws"):] }, ErrFailed, "e=channel-bindings-dont-match"},
		{"nonce mismatch", func(s string) string { return strings.Replace(s, ",r=", ",r=X", 1) }, ErrFailed, "e=other-error"},
		{"flipped proof", func(s string) string {
			i := strings.LastIndex(s, ",p=") + 3
			p, _ := base64.StdEncoding.DecodeString(s[i:])
			p[0] ^= 1
			return s[:i] + base64.StdEncoding.EncodeToString(p)
		}, ErrFailed, "e=invalid-proof"},
	} {
		conv, _, final := start()
		out, done, err := conv.Step([]byte(tc.edit(string(final))))
		if !errors.Is(err, tc.want) || done || string(out) != tc.answer {
			t.Errorf("client-final %s: %q done=%v err=%v, want %q and %v", tc.name, out, done, err, tc.answer, tc.want)
		}
		if conv.Principal() != "" {
			t.Errorf("%s: principal %q after a failure", tc.name, conv.Principal())
		}
	}

	// Replay: a client-final that succeeded once is refused by its conversation afterwards, and by a
	// new conversation (whose server nonce differs).
	conv, _, final := start()
	if _, done, err := conv.Step(final); err != nil || !done {
		t.Fatalf("good final: %v", err)
	}
	if _, _, err := conv.Step(final); !errors.Is(err, ErrMalformed) {
		t.Errorf("final replayed on its conversation: %v", err)
	}
	conv2, _ := a.Start(MechSCRAM256)
	if _, _, err := conv2.Step([]byte("n,,n=alice,r=" + strings.TrimPrefix(strings.Split(string(final), ",")[1], "r=")[:20])); err != nil {
		t.Fatal(err)
	}
	if _, _, err := conv2.Step(final); !errors.Is(err, ErrFailed) {
		t.Errorf("final replayed on a new conversation: %v, want ErrFailed", err)
	}
}

// TestSCRAMAuthzidSelf accepts "n,a=alice," for alice (franz-go sends it when Zid is set).
func TestSCRAMAuthzidSelf(t *testing.T) {
	a := &Authenticator{Users: testUsers(t)}
	p, err := exchange(t, a, scram.Auth{Zid: "alice", User: "alice", Pass: "secret"}.AsSha512Mechanism())
	if err != nil || p != "alice" {
		t.Fatalf("principal %q, err %v", p, err)
	}
}

// TestPlainUsers checks PLAIN against the users (franz-go's PLAIN client) and against tokens: the
// right password succeeds, a wrong one and an unknown user fail alike with ErrFailed.
func TestPlainUsers(t *testing.T) {
	a := &Authenticator{Users: testUsers(t), Tokens: map[string]string{"tok": "svc"}}
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "secret", true},
		{"bob", "hunter2", true},
		{"svc", "tok", true},
		{"alice", "hunter2", false},
		{"alice", "secreT", false},
		{"nobody", "secret", false},
		{"bob", "tok", false},
	} {
		p, err := exchange(t, a, plain.Auth{User: tc.user, Pass: tc.pass}.AsMechanism())
		if tc.ok && (err != nil || p != tc.user) {
			t.Errorf("%s/%s: principal %q err %v", tc.user, tc.pass, p, err)
		}
		if !tc.ok && (err == nil || err.Error() != ErrFailed.Error()) {
			t.Errorf("%s/%s: err %v, want exactly ErrFailed", tc.user, tc.pass, err)
		}
	}
	for _, msg := range []string{"", "alice", "\x00alice", "\x00\x00secret", "a\x00b\x00c\x00d"} {
		conv, _ := a.Start(MechPlain)
		if _, _, err := conv.Step([]byte(msg)); !errors.Is(err, ErrMalformed) {
			t.Errorf("PLAIN %q: %v, want ErrMalformed", msg, err)
		}
	}
	conv, _ := a.Start(MechPlain)
	if _, _, err := conv.Step([]byte("bob\x00alice\x00secret")); !errors.Is(err, ErrFailed) {
		t.Errorf("PLAIN as another authzid: %v", err)
	}
}

// TestMechanismsOffered: SCRAM is offered only with users; an unknown mechanism is ErrMechanism.
func TestMechanismsOffered(t *testing.T) {
	if _, err := (&Authenticator{Tokens: map[string]string{"t": "p"}}).Start(MechSCRAM256); !errors.Is(err, ErrMechanism) {
		t.Errorf("SCRAM without users: %v", err)
	}
	a := &Authenticator{Users: testUsers(t)}
	if _, err := a.Start("GSSAPI"); !errors.Is(err, ErrMechanism) {
		t.Errorf("GSSAPI: %v", err)
	}
	if got := strings.Join(a.Mechanisms(), " "); got != "SCRAM-SHA-512 SCRAM-SHA-256 PLAIN" {
		t.Errorf("mechanisms %q", got)
	}
	if !a.Enabled() || (&Authenticator{}).Enabled() {
		t.Error("Enabled")
	}
}

// librdkafkaFinal answers server-first the way librdkafka (kcat, confluent-kafka) builds its
// client-final: the nonce attribute is its own client nonce followed by the whole nonce of the
// server-first (which already starts with the client nonce), and the proof covers that message.
func librdkafkaFinal(t *testing.T, mech, pass, clientFirstBare, cnonce, serverFirst string) (final, serverSig string) {
	t.Helper()
	h := scramHash(mech)
	var nonce, salt64, iter string
	for _, attr := range strings.Split(serverFirst, ",") {
		switch {
		case strings.HasPrefix(attr, "r="):
			nonce = attr[2:]
		case strings.HasPrefix(attr, "s="):
			salt64 = attr[2:]
		case strings.HasPrefix(attr, "i="):
			iter = attr[2:]
		}
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || iter != "4096" {
		t.Fatalf("server-first %q", serverFirst)
	}
	salted, err := saltedPassword(h, []byte(pass), salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	withoutProof := "c=biws,r=" + cnonce + nonce
	authMessage := clientFirstBare + "," + serverFirst + "," + withoutProof
	clientKey := hmacSum(h, salted, "Client Key")
	sum := h()
	sum.Write(clientKey)
	proof := hmacSum(h, sum.Sum(nil), authMessage)
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	sig := hmacSum(h, hmacSum(h, salted, "Server Key"), authMessage)
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), "v=" + base64.StdEncoding.EncodeToString(sig)
}

// TestSCRAMLibrdkafkaNonce: librdkafka repeats its client nonce before the server-first's nonce in
// the client-final (Kafka accepts it: it checks that the nonce ends with the server-first's). The
// exchange succeeds with the server signature over the message as sent, for both mechanisms and
// for a client nonce holding '=' (librdkafka's nonces are any printable bytes but ','); a nonce
// that merely ends with the server-first's after some other prefix is still a mismatch.
func TestSCRAMLibrdkafkaNonce(t *testing.T) {
	a := &Authenticator{Users: testUsers(t)}
	for _, mech := range []string{MechSCRAM256, MechSCRAM512} {
		for _, cnonce := range []string{"fyko+d2lbbFgONRv9qkxdawL", "=J8G4}@XoRDJpKarTrK52.-L]p|qZoOJ"} {
			conv, _ := a.Start(mech)
			bare := "n=alice,r=" + cnonce
			sf, _, err := conv.Step([]byte("n,," + bare))
			if err != nil {
				t.Fatal(err)
			}
			final, sig := librdkafkaFinal(t, mech, "secret", bare, cnonce, string(sf))
			out, done, err := conv.Step([]byte(final))
			if err != nil || !done || string(out) != sig || conv.Principal() != "alice" {
				t.Errorf("%s nonce %q: %q done=%v err=%v principal %q, want %q", mech, cnonce, out, done, err, conv.Principal(), sig)
			}

			conv, _ = a.Start(mech)
			sf, _, err = conv.Step([]byte("n,," + bare))
			if err != nil {
				t.Fatal(err)
			}
			final, _ = librdkafkaFinal(t, mech, "secret", bare, "X"+cnonce, string(sf))
			if out, done, err := conv.Step([]byte(final)); !errors.Is(err, ErrFailed) || done || string(out) != "e=other-error" {
				t.Errorf("%s nonce %q with another prefix: %q done=%v err=%v, want e=other-error", mech, cnonce, out, done, err)
			}
		}
	}
}
