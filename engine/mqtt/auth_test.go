package mqtt

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

func withAuth(t *testing.T) func(*Options) {
	return func(o *Options) {
		o.Authenticator = &auth.Authenticator{Tokens: map[string]string{"secret": "alice"}}
		var rules auth.Rules
		for _, s := range []string{"alice:produce,consume,admin:ok.*", "alice:consume:ro.*"} {
			r, err := auth.ParseRule(s)
			if err != nil {
				t.Fatal(err)
			}
			rules = append(rules, r)
		}
		o.ACL = rules
	}
}

func creds(user, pass string) func(*paho.Connect) {
	return func(cp *paho.Connect) {
		cp.Username, cp.UsernameFlag = user, user != ""
		cp.Password, cp.PasswordFlag = []byte(pass), pass != ""
	}
}

// TestAuth: a wrong password is CONNACK 0x86 (MQTT 5) or 0x04 (3.1.1), no credentials 0x87 or
// 0x05; a token is accepted as the password of its principal, or alone.
func TestAuth(t *testing.T) {
	b := startBroker(t, nil, withAuth(t))
	for _, tc := range []struct {
		user, pass string
		code       byte
	}{{"alice", "wrong", 0x86}, {"", "", 0x87}, {"bob", "secret", 0x86}} {
		_, ca, err := b.dial("c", creds(tc.user, tc.pass))
		if err == nil || ca == nil || ca.ReasonCode != tc.code {
			t.Errorf("user %q pass %q: err %v, connack %+v, want %#x", tc.user, tc.pass, err, ca, tc.code)
		}
	}
	b.mustDial("c1", creds("alice", "secret"))
	b.mustDial("c2", creds("", "secret"))
	// MQTT 3.1.1: the return codes of its CONNACK.
	for _, tc := range []struct {
		flags byte
		code  byte
	}{{0xC2, 0x04}, {0x02, 0x05}} {
		nc := rawDial(t, b)
		body := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 4, tc.flags, 0, 30, 0x00, 0x01, 'x'}
		if tc.flags&0x80 != 0 {
			body = append(body, 0x00, 0x05, 'a', 'l', 'i', 'c', 'e', 0x00, 0x01, 'z')
		}
		_, _ = nc.Write(append([]byte{0x10, byte(len(body))}, body...))
		got := waitClosed(t, nc)
		if len(got) < 4 || got[0] != 0x20 || got[3] != tc.code {
			t.Errorf("3.1.1 flags %#x: got % x, want return code %#x", tc.flags, got, tc.code)
		}
	}
}

// TestACL: a denied PUBLISH is PUBACK 0x87 (MQTT 5) and stores nothing; a denied subscription is
// SUBACK 0x87; MQTT 3.1.1 closes the connection of a denied PUBLISH.
func TestACL(t *testing.T) {
	b := startBroker(t, nil, withAuth(t))
	c := b.mustDial("c", creds("alice", "secret"))
	if r := c.pub(t, "ok/x", 1, "fine"); r.ReasonCode != 0 {
		t.Fatalf("allowed publish: %#x", r.ReasonCode)
	}
	r, err := c.Publish(ctx10(t), &paho.Publish{Topic: "ro/x", QoS: 1, Payload: []byte("no")})
	if r == nil || r.ReasonCode != 0x87 {
		t.Fatalf("denied publish: %+v %v", r, err)
	}
	if b.e.TopicByName("ro.x") != nil {
		t.Fatal("a denied publish created its topic")
	}
	if code := c.sub(t, "secret/x", 1); code != 0x87 {
		t.Fatalf("denied subscribe: %#x", code)
	}
	if code := c.sub(t, "ok/x", 1); code != 1 {
		t.Fatalf("allowed subscribe: %#x", code)
	}
	// The connection is still usable.
	c.pub(t, "ok/x", 1, "again")
	if m := c.next(t); string(m.Payload) != "again" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestCrossProtocol: a record produced by another face (no mqtt headers) reaches an MQTT
// subscriber under its mapped-back topic, its headers as MQTT 5 user properties.
func TestCrossProtocol(t *testing.T) {
	b := startBroker(t, nil, nil)
	if _, err := b.e.CreateTopic(wire.TopicConfig{Name: "native.dev_2E1", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	c := b.mustDial("c", nil)
	c.sub(t, "native/#", 1)
	pb, err := b.e.Publisher("native.dev_2E1", 1, wire.DurabilityNone)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pb.PublishRecord(ctx, nil, []byte("hello"), wire.Header{Key: []byte("origin"), Value: []byte("go")}); err != nil {
		t.Fatal(err)
	}
	m := c.next(t)
	if m.Topic != "native/dev.1" || string(m.Payload) != "hello" || m.QoS != 1 {
		t.Fatalf("got %s %q qos %d", m.Topic, m.Payload, m.QoS)
	}
	if m.Properties == nil || m.Properties.User.Get("origin") != "go" {
		t.Fatalf("user properties %+v", m.Properties)
	}
}

// TestACLv311ClosesOnDeniedPublish: MQTT 3.1.1 cannot refuse a PUBLISH (3.3.5): a denied one closes
// the connection, unacknowledged, and stores nothing.
func TestACLv311ClosesOnDeniedPublish(t *testing.T) {
	b := startBroker(t, nil, withAuth(t))
	nc := rawDial(t, b)
	body := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 30, 0x00, 0x01, 'x',
		0x00, 0x05, 'a', 'l', 'i', 'c', 'e', 0x00, 0x06, 's', 'e', 'c', 'r', 'e', 't'}
	_, _ = nc.Write(append([]byte{0x10, byte(len(body))}, body...))
	ack := make([]byte, 4)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := readFull(nc, ack); err != nil || ack[3] != 0 {
		t.Fatalf("CONNACK % x %v", ack, err)
	}
	_, _ = nc.Write([]byte{0x32, 0x09, 0x00, 0x04, 'r', 'o', '/', 'x', 0x00, 0x01, 'n'}) // QoS 1, id 1
	if got := waitClosed(t, nc); len(got) != 0 {
		t.Fatalf("got % x, want the connection closed without an answer", got)
	}
	if b.e.TopicByName("ro.x") != nil {
		t.Fatal("a denied publish created its topic")
	}
}

// TestV5Properties: MQTT 5 publish properties become record headers (message expiry the engine's
// sluice-ttl) and come back out as properties.
func TestV5Properties(t *testing.T) {
	b := startBroker(t, nil, nil)
	c := b.mustDial("c", nil)
	c.sub(t, "props", 1)
	expiry := uint32(60)
	format := byte(1)
	_, err := c.Publish(ctx10(t), &paho.Publish{Topic: "props", QoS: 1, Payload: []byte("{}"), Properties: &paho.PublishProperties{
		ContentType: "application/json", ResponseTopic: "reply/here", CorrelationData: []byte("c1"),
		MessageExpiry: &expiry, PayloadFormat: &format, User: paho.UserProperties{{Key: "site", Value: "eu"}}}})
	if err != nil {
		t.Fatal(err)
	}
	m := c.next(t)
	p := m.Properties
	if p == nil || p.ContentType != "application/json" || p.ResponseTopic != "reply/here" || string(p.CorrelationData) != "c1" ||
		p.MessageExpiry == nil || *p.MessageExpiry == 0 || *p.MessageExpiry > 60 || p.PayloadFormat == nil || *p.PayloadFormat != 1 ||
		p.User.Get("site") != "eu" {
		t.Fatalf("properties %+v", p)
	}
	l, err := b.e.SubscribeLocal(wireSub("props"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := l.NextRecord(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{HeaderContentType: "application/json", HeaderResponseTopic: "reply/here",
		HeaderCorrelation: "c1", wire.HeaderTTL: "60000", "site": "eu", HeaderPayloadFormat: "1"} {
		if v, ok := r.Header(k); !ok || string(v) != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
}

// TestSetAuth: new tokens reach CONNECT at once; turning authentication off is refused.
func TestSetAuth(t *testing.T) {
	b := startBroker(t, nil, withAuth(t))
	if _, ca, err := b.dial("c", creds("bob", "fresh")); err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("before: %v %+v", err, ca)
	}
	if err := b.srv.SetAuth(map[string]string{"fresh": "bob"}, b.srv.acl()); err != nil {
		t.Fatal(err)
	}
	b.mustDial("c", creds("bob", "fresh"))
	if err := b.srv.SetAuth(nil, b.srv.acl()); err != ErrAuthMode {
		t.Fatalf("turning authentication off: %v", err)
	}
}

// TestShareGroupACL: a shared subscription needs the consume right on its consumer group
// ($share.<group>:<name>) besides the topic's: a share group the rules do not grant is SUBACK
// 0x87 (MQTT 5) or 0x80 (3.1.1); one they grant is served. A persistent session's own group is not
// checked against group rules.
func TestShareGroupACL(t *testing.T) {
	b := startBroker(t, nil, func(o *Options) {
		o.Authenticator = &auth.Authenticator{Tokens: map[string]string{"secret": "alice"}}
		var rules auth.Rules
		for _, s := range []string{"alice:produce,consume,admin:ok.*", "alice:consume:group:$share.workers:*"} {
			r, err := auth.ParseRule(s)
			if err != nil {
				t.Fatal(err)
			}
			rules = append(rules, r)
		}
		o.ACL = rules
	})
	expiry := uint32(3600)
	c := b.mustDial("c", func(cp *paho.Connect) {
		creds("alice", "secret")(cp)
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	})
	if code := c.sub(t, "$share/others/ok/x", 1); code != 0x87 {
		t.Fatalf("share group not granted: SUBACK %#x, want 0x87", code)
	}
	if n := b.srv.Stats().SubscribeRefused.Load(); n != 1 {
		t.Fatalf("subscribe refused %d, want 1", n)
	}
	if code := c.sub(t, "$share/workers/ok/x", 1); code != 1 {
		t.Fatalf("share group granted: SUBACK %#x, want 1", code)
	}
	// A wildcard's share group is a group over the pattern ($share.others:ok.*): checked alike.
	if code := c.sub(t, "$share/others/ok/+", 1); code != 0x87 {
		t.Fatalf("wildcard share group not granted: SUBACK %#x, want 0x87", code)
	}
	if code := c.sub(t, "$share/workers/ok/+", 1); code != 1 {
		t.Fatalf("wildcard share group granted: SUBACK %#x, want 1", code)
	}
	if code := c.sub(t, "ok/y", 1); code != 1 { // the session's group: no group rule needed
		t.Fatalf("persistent session subscription: SUBACK %#x, want 1", code)
	}
	c.pub(t, "ok/x", 1, "shared")
	for range 2 { // one for each share group the session is in
		if m := c.next(t); string(m.Payload) != "shared" {
			t.Fatalf("got %q", m.Payload)
		}
	}
}

// TestPublishUnknownTopic: without auto-creation, a QoS 1 PUBLISH to a topic that does not exist is
// PUBACK 0x83 (implementation specific: the name is valid) with a Reason String saying how to create
// it, not 0x90 (topic name invalid); the connection stays usable, and a topic that exists is stored.
func TestPublishUnknownTopic(t *testing.T) {
	b := startBroker(t, func(o *engine.Options) { o.AutoCreateTopics = false }, nil)
	if _, err := b.e.CreateTopic(wire.TopicConfig{Name: "have.it", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	c := b.mustDial("c", nil)
	r, err := c.Publish(ctx10(t), &paho.Publish{Topic: "no/such", QoS: 1, Payload: []byte("x")})
	if r == nil || r.ReasonCode != 0x83 {
		t.Fatalf("publish to a missing topic: %+v %v, want reason code 0x83", r, err)
	}
	if r.Properties == nil || !strings.Contains(r.Properties.ReasonString, "--auto-create") {
		t.Fatalf("reason string %+v: want the way to create the topic", r.Properties)
	}
	if b.e.TopicByName("no.such") != nil {
		t.Fatal("the refused publish created its topic")
	}
	if r := c.pub(t, "have/it", 1, "fine"); r.ReasonCode != 0 {
		t.Fatalf("publish to an existing topic after the refusal: %#x", r.ReasonCode)
	}
}
