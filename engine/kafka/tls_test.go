package kafka

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicemq/sluice/engine/server/servertest"
)

// TestTLSListener: the second listener serves the same protocol over TLS, with SASL on top.
func TestTLSListener(t *testing.T) {
	cert, pool := servertest.SelfSigned(t)
	s, e := startBroker(t, func(o *Options) {
		o.TLSAddr = "127.0.0.1:0"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	})
	createTopic(t, e, "sec", 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.TLSAddr().String()), kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}),
		kgo.DefaultProduceTopic("sec"), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := produceAll(t, cl, "sec", 500)
	// Metadata over TLS names the TLS listener, so a consumer seeded with it stays on TLS.
	cons, err := kgo.NewClient(kgo.SeedBrokers(s.TLSAddr().String()), kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}),
		kgo.ConsumeTopics("sec"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	got := map[int32][]*kgo.Record{}
	for n := 0; n < 500; {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 500", n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got[r.Partition] = append(got[r.Partition], r); n++ })
	}
	sameRecords(t, want, got)
}
