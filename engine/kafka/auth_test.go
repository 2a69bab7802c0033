package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

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
		kgo.RecordDeliveryTimeout(5*time.Second))
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
