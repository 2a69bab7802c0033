package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestMQTTListener: sluiced serves MQTT on --mqtt-listen: a paho (MQTT 5) client subscribes and
// publishes a QoS 1 message to an auto-created topic and receives it, and /metrics carries the
// listener's sluice_mqtt_* counters.
func TestMQTTListener(t *testing.T) {
	maddr := freePort(t)
	b := startBroker(t, t.TempDir(), "--auto-create", "--mqtt-listen", maddr)
	waitListening(t, maddr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := net.DialTimeout("tcp", maddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *paho.Publish, 1)
	c := paho.NewClient(paho.ClientConfig{ClientID: "e2e", Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet
			return true, nil
		}}})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "e2e", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect: %v\n%s", err, b.log())
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "e2e/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "e2e/x", QoS: 1, Payload: []byte("hi")}); err != nil {
		t.Fatalf("publish: %v\n%s", err, b.log())
	}
	select {
	case m := <-got:
		if m.Topic != "e2e/x" || string(m.Payload) != "hi" {
			t.Fatalf("got %s %q", m.Topic, m.Payload)
		}
	case <-ctx.Done():
		t.Fatalf("no message\n%s", b.log())
	}
	if v := b.metric(t, "sluice_mqtt_published_in_total", ""); v != 1 {
		t.Errorf("sluice_mqtt_published_in_total = %d, want 1", v)
	}
	if v := b.metric(t, "sluice_mqtt_connections", ""); v != 1 {
		t.Errorf("sluice_mqtt_connections = %d, want 1", v)
	}
}
