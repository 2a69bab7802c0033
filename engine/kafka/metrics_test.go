package kafka

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// metricValue returns the value of series (name and labels, as written) in a Prometheus text
// exposition, failing when it is absent.
func metricValue(t *testing.T, text []byte, series string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\d+)$`).FindSubmatch(text)
	if m == nil {
		t.Fatalf("%s not found in\n%s", series, text)
	}
	v, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return v
}

// TestWriteMetrics: the listener's counters, in Prometheus' text format, count a produce that
// succeeded (records, bytes, requests by key), a topic the ACL denies (kgo learns it from Metadata)
// and a SASL step with a wrong secret (by error code, and SASL failures); every API served has a
// request series from the start.
func TestWriteMetrics(t *testing.T) {
	s := authBroker(t)
	var before bytes.Buffer
	s.WriteMetrics(&before)
	for _, series := range []string{`sluice_kafka_requests_total{api="Produce",key="0"}`,
		`sluice_kafka_requests_total{api="JoinGroup",key="11"}`, "sluice_kafka_sasl_failures_total",
		"sluice_kafka_connections"} {
		if v := metricValue(t, before.Bytes(), series); v != 0 {
			t.Fatalf("%s = %d before any connection", series, v)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good := newClient(t, s, plainAuth("alice", "secret-a"), kgo.DefaultProduceTopic("open.orders"),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err := good.ProduceSync(ctx, &kgo.Record{Value: make([]byte, 300)}).FirstErr(); err != nil {
		t.Fatalf("right secret: %v", err)
	}
	denied := newClient(t, s, plainAuth("alice", "secret-a"), kgo.DefaultProduceTopic("closed"))
	if err := denied.ProduceSync(ctx, &kgo.Record{Value: []byte("no")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("denied produce: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	bad := newClient(t, s, plainAuth("alice", "wrong"), kgo.DefaultProduceTopic("open.orders"),
		kgo.RecordDeliveryTimeout(1500*time.Millisecond))
	if err := bad.ProduceSync(ctx, &kgo.Record{Value: []byte("hello")}).FirstErr(); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong secret: %v, want SASL_AUTHENTICATION_FAILED", err)
	}

	var out bytes.Buffer
	s.WriteMetrics(&out)
	text := out.Bytes()
	atLeast := func(series string, want int64) {
		t.Helper()
		if v := metricValue(t, text, series); v < want {
			t.Errorf("%s = %d, want >= %d", series, v, want)
		}
	}
	atLeast("sluice_kafka_connections", 1)
	atLeast("sluice_kafka_connections_accepted_total", 3)
	atLeast(`sluice_kafka_requests_total{api="Produce",key="0"}`, 1)
	atLeast(`sluice_kafka_requests_total{api="Metadata",key="3"}`, 2)
	atLeast(`sluice_kafka_requests_total{api="SASLHandshake",key="17"}`, 3)
	atLeast(`sluice_kafka_requests_total{api="SASLAuthenticate",key="36"}`, 3)
	atLeast(`sluice_kafka_errors_total{code="29",name="TOPIC_AUTHORIZATION_FAILED"}`, 1)
	atLeast(`sluice_kafka_errors_total{code="58",name="SASL_AUTHENTICATION_FAILED"}`, 1)
	atLeast("sluice_kafka_sasl_failures_total", 1)
	if v := metricValue(t, text, "sluice_kafka_produce_records_total"); v != 1 {
		t.Errorf("sluice_kafka_produce_records_total = %d, want 1 (the denied record is not stored)", v)
	}
	atLeast("sluice_kafka_produce_bytes_total", 300)
	if got, want := s.Stats().Errors(errTopicAuthorization), uint64(1); got < want {
		t.Errorf("Stats().Errors(TOPIC_AUTHORIZATION_FAILED) = %d", got)
	}
	if s.Stats().Requests(keyProduce) < 1 {
		t.Errorf("Stats().Requests(Produce) = %d", s.Stats().Requests(keyProduce))
	}
}
