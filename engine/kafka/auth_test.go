package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicemq/sluice/engine/auth"
)

// authBroker starts a listener requiring authentication: token "secret-a" is principal alice,
// who may produce to and consume "open.*" topics only.
func authBroker(t *testing.T) *Server {
	s, e := startBroker(t, func(o *Options) {
		o.Authenticator = &auth.Authenticator{Tokens: map[string]string{"secret-a": "alice"}}
		o.ACL = auth.Rules{{Principal: "alice", Actions: auth.ActProduce | auth.ActConsume, Topic: "open.*"}}
	})
	createTopic(t, e, "open.orders", 2)
	createTopic(t, e, "closed", 2)
	return s
}

func plainAuth(user, pass string) kgo.Opt {
	return kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism())
}

// TestSASLPlain: PLAIN with the right secret authenticates and produces; with a wrong one the
// client gets SASL_AUTHENTICATION_FAILED.
func TestSASLPlain(t *testing.T) {
	s := authBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	good := newClient(t, s, plainAuth("alice", "secret-a"), kgo.DefaultProduceTopic("open.orders"))
	if err := good.ProduceSync(ctx, &kgo.Record{Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatalf("right secret: %v", err)
	}

	bad := newClient(t, s, plainAuth("alice", "wrong"), kgo.DefaultProduceTopic("open.orders"),
		kgo.RecordDeliveryTimeout(1500*time.Millisecond))
	err := bad.ProduceSync(ctx, &kgo.Record{Value: []byte("hello")}).FirstErr()
	if !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong secret: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
}

// TestACLDeniedProduce: a produce the ACL denies is answered TOPIC_AUTHORIZATION_FAILED at once,
// not left hanging.
func TestACLDeniedProduce(t *testing.T) {
	s := authBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, s, plainAuth("alice", "secret-a"), kgo.DefaultProduceTopic("closed"))
	start := time.Now()
	err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("denied produce: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("denied produce took %v", d)
	}
}

// TestSASLHandshakeV0RawFrames: after a v0 SaslHandshake the SASL bytes travel as bare frames
// (kafka-python's framing); the right secret opens the connection to requests, a wrong one closes
// it, and a request before authentication closes it too.
func TestSASLHandshakeV0RawFrames(t *testing.T) {
	s := authBroker(t)
	handshake := kmsg.NewPtrSASLHandshakeRequest()
	handshake.Mechanism = "PLAIN"
	raw := func(b []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...) }

	c := rawDial(t, s)
	if r := roundTrip(t, c, 1, handshake).(*kmsg.SASLHandshakeResponse); r.ErrorCode != 0 {
		t.Fatalf("handshake: code %d", r.ErrorCode)
	}
	if _, err := c.Write(raw([]byte("\x00alice\x00secret-a"))); err != nil {
		t.Fatal(err)
	}
	if b := readFrame(t, c); len(b) != 0 {
		t.Fatalf("PLAIN answer %q, want empty", b)
	}
	meta := kmsg.NewPtrMetadataRequest()
	meta.SetVersion(4)
	meta.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("open.orders")}}
	if r := roundTrip(t, c, 2, meta).(*kmsg.MetadataResponse); len(r.Topics) != 1 || r.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata after authentication: %+v", r.Topics)
	}

	wrong := rawDial(t, s)
	roundTrip(t, wrong, 1, handshake)
	if _, err := wrong.Write(raw([]byte("\x00alice\x00nope"))); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, wrong)

	early := rawDial(t, s)
	if _, err := early.Write(appendRequest(nil, 1, meta)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, early)
}

// TestHandshakeTimeout: a connection that does not authenticate within the handshake timeout is
// closed, whatever it sends meanwhile; one that authenticated stays.
func TestHandshakeTimeout(t *testing.T) {
	s, _ := startBroker(t, func(o *Options) {
		o.Authenticator = &auth.Authenticator{Tokens: map[string]string{"secret-a": "alice"}}
		o.HandshakeTimeout = 300 * time.Millisecond
	})
	idle := rawDial(t, s)
	chatty := rawDial(t, s)
	if _, err := chatty.Write(appendRequest(nil, 1, kmsg.NewPtrApiVersionsRequest())); err != nil {
		t.Fatal(err)
	}
	readFrame(t, chatty)
	good := rawDial(t, s)
	handshake := kmsg.NewPtrSASLHandshakeRequest()
	handshake.SetVersion(1)
	handshake.Mechanism = "PLAIN"
	roundTrip(t, good, 1, handshake)
	sa := kmsg.NewPtrSASLAuthenticateRequest()
	sa.SASLAuthBytes = []byte("\x00alice\x00secret-a")
	if r := roundTrip(t, good, 2, sa).(*kmsg.SASLAuthenticateResponse); r.ErrorCode != 0 {
		t.Fatalf("authenticate: code %d", r.ErrorCode)
	}
	expectClosed(t, idle)
	expectClosed(t, chatty)
	api := kmsg.NewPtrApiVersionsRequest()
	roundTrip(t, good, 3, api)
}

// TestSASLSCRAM: SCRAM-SHA-256 and SCRAM-SHA-512 against a users file succeed with the right
// password and fail with a wrong one; PLAIN against the same user works too.
func TestSASLSCRAM(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if _, err := auth.AddUser(path, "bob", "pa55word", 0); err != nil {
		t.Fatal(err)
	}
	users, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	s, e := startBroker(t, func(o *Options) { o.Authenticator = &auth.Authenticator{Users: users} })
	createTopic(t, e, "scram", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		mech sasl.Mechanism
		ok   bool
	}{
		{"sha256", scram.Auth{User: "bob", Pass: "pa55word"}.AsSha256Mechanism(), true},
		{"sha512", scram.Auth{User: "bob", Pass: "pa55word"}.AsSha512Mechanism(), true},
		{"plain", plain.Auth{User: "bob", Pass: "pa55word"}.AsMechanism(), true},
		{"sha256 wrong", scram.Auth{User: "bob", Pass: "nope"}.AsSha256Mechanism(), false},
		{"sha512 unknown user", scram.Auth{User: "eve", Pass: "pa55word"}.AsSha512Mechanism(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			timeout := 30 * time.Second
			if !tc.ok {
				timeout = 1500 * time.Millisecond // a refused client retries until its records time out
			}
			cl := newClient(t, s, kgo.SASL(tc.mech), kgo.DefaultProduceTopic("scram"), kgo.RecordDeliveryTimeout(timeout))
			err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr()
			switch {
			case tc.ok && err != nil:
				t.Fatalf("right password: %v", err)
			case !tc.ok && !errors.Is(err, kerr.SaslAuthenticationFailed):
				t.Fatalf("wrong password: %v, want SASL_AUTHENTICATION_FAILED", err)
			}
		})
	}
}

// TestMetadataAutoCreate: Metadata creates a missing topic only when the request allows it, the
// engine auto-creates and the principal has admin on the name.
func TestMetadataAutoCreate(t *testing.T) {
	s, e := startBroker(t, func(o *Options) {
		o.Authenticator = &auth.Authenticator{Tokens: map[string]string{"secret-a": "alice"}}
		o.ACL = auth.Rules{
			{Principal: "alice", Actions: auth.ActProduce | auth.ActConsume | auth.ActAdmin, Topic: "mine.*"},
			{Principal: "alice", Actions: auth.ActProduce | auth.ActConsume, Topic: "theirs.*"},
		}
	})
	c := rawDial(t, s)
	handshake := kmsg.NewPtrSASLHandshakeRequest()
	handshake.SetVersion(1)
	handshake.Mechanism = "PLAIN"
	roundTrip(t, c, 1, handshake)
	sa := kmsg.NewPtrSASLAuthenticateRequest()
	sa.SASLAuthBytes = []byte("\x00alice\x00secret-a")
	roundTrip(t, c, 2, sa)
	for i, tc := range []struct {
		topic  string
		allow  bool
		code   int16
		exists bool
	}{
		{"mine.a", false, errUnknownTopicOrPartition, false},  // the request does not allow it
		{"theirs.a", true, errUnknownTopicOrPartition, false}, // no admin on the name
		{"other", true, errTopicAuthorization, false},         // no right at all
		{"mine.b", true, errNone, true},
	} {
		meta := kmsg.NewPtrMetadataRequest()
		meta.SetVersion(9)
		meta.AllowAutoTopicCreation = tc.allow
		meta.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr(tc.topic)}}
		r := roundTrip(t, c, int32(10+i), meta).(*kmsg.MetadataResponse)
		if got := r.Topics[0].ErrorCode; got != tc.code || (e.TopicByName(tc.topic) != nil) != tc.exists {
			t.Fatalf("%s (allow %v): code %d, exists %v", tc.topic, tc.allow, got, e.TopicByName(tc.topic) != nil)
		}
		if tc.exists && len(r.Topics[0].Partitions) == 0 {
			t.Fatalf("%s created but answered without partitions", tc.topic)
		}
	}
}

// TestSetAuth: SetAuth (sluiced's SIGHUP) swaps the tokens and the ACL for the next connections and
// requests: a removed token fails, a new one succeeds, a rule granted by the new ACL applies; turning
// authentication or ACLs off is refused with ErrAuthMode and changes nothing.
func TestSetAuth(t *testing.T) {
	s := authBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	produce := func(user, pass, topic string) error {
		cl := newClient(t, s, plainAuth(user, pass), kgo.DefaultProduceTopic(topic),
			kgo.RecordDeliveryTimeout(1500*time.Millisecond))
		defer cl.Close()
		return cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr()
	}
	if err := produce("alice", "secret-a", "closed"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("before the reload: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	acl := auth.Rules{{Principal: "alice", Actions: auth.ActProduce | auth.ActAdmin, Topic: "*"}}
	if err := s.SetAuth(map[string]string{"secret-a2": "alice"}, acl); err != nil {
		t.Fatal(err)
	}
	if err := produce("alice", "secret-a", "open.orders"); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("removed token: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
	if err := produce("alice", "secret-a2", "closed"); err != nil {
		t.Fatalf("new token under the new rules: %v", err)
	}
	if err := s.SetAuth(nil, acl); !errors.Is(err, ErrAuthMode) {
		t.Fatalf("turning authentication off: %v, want ErrAuthMode", err)
	}
	if err := s.SetAuth(map[string]string{"x": "bob"}, nil); !errors.Is(err, ErrAuthMode) {
		t.Fatalf("turning ACLs off: %v, want ErrAuthMode", err)
	}
	if err := produce("alice", "secret-a2", "closed"); err != nil {
		t.Fatalf("after refused reloads: %v", err)
	}
}
