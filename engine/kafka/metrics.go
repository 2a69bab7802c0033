package kafka

import (
	"fmt"
	"io"
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// cacheLine is the coherence unit the hot counters are padded to: they are bumped by every event
// loop, and two counters sharing a line would bounce it between cores on every request (false
// sharing), as in engine.Metrics.
const cacheLine = 64

// counter is an atomic counter alone on its cache line.
type counter struct {
	atomic.Uint64
	_ [cacheLine - unsafe.Sizeof(atomic.Uint64{})]byte
}

// gauge is an atomic signed value alone on its cache line.
type gauge struct {
	atomic.Int64
	_ [cacheLine - unsafe.Sizeof(atomic.Int64{})]byte
}

// maxCountedKey bounds the API keys counted one by one: Kafka's keys are below it (the highest
// defined is in the 70s); a request with a key at or above it, or negative, counts as "other".
const maxCountedKey = 128

// maxCountedCode bounds the error codes counted one by one (Kafka's run from -1 to the 130s).
const maxCountedCode = 192

// Stats are the listener's counters, written in Prometheus' text format by Server.WriteMetrics.
// Any goroutine may read them; the loops and the goroutines answering requests off the loop add.
type Stats struct {
	Connections    gauge   // open connections, TCP and TLS
	Accepted       counter // connections accepted, including those refused at once
	ProtocolErrors counter // connections closed for a malformed, oversized or unsupported request
	Refused        counter // connections refused by MaxConnections
	SASLFailures   counter // SASL steps that failed (wrong secret, malformed message)
	// ProduceRecords and ProduceBytes count the records and record-batch bytes stored by Produce.
	ProduceRecords counter
	ProduceBytes   counter
	// FetchBytes counts the record-batch bytes Fetch answers carried.
	FetchBytes counter

	// requests counts requests by API key (index), served or not; requestsOther those whose key is
	// outside [0, maxCountedKey).
	requests      [maxCountedKey]counter
	requestsOther counter
	// errors counts error codes answered, at index code+1 (UNKNOWN_SERVER_ERROR, -1, at 0); a code
	// outside the array counts at 0. Not padded: errors are not the hot path.
	errors [maxCountedCode]atomic.Uint64
}

// request counts one request of API key.
func (st *Stats) request(key int16) {
	if key >= 0 && int(key) < maxCountedKey {
		st.requests[key].Add(1)
		return
	}
	st.requestsOther.Add(1)
}

// Requests returns how many requests of API key were read.
func (st *Stats) Requests(key int16) uint64 {
	if key >= 0 && int(key) < maxCountedKey {
		return st.requests[key].Load()
	}
	return st.requestsOther.Load()
}

// errorCode counts one answer of a nonzero Kafka error code.
func (st *Stats) errorCode(code int16) {
	if code == errNone {
		return
	}
	i := int(code) + 1
	if i < 0 || i >= maxCountedCode {
		i = 0
	}
	st.errors[i].Add(1)
}

// Errors returns how many times code was answered.
func (st *Stats) Errors(code int16) uint64 {
	i := int(code) + 1
	if i < 0 || i >= maxCountedCode {
		return 0
	}
	return st.errors[i].Load()
}

var errorCodeType = reflect.TypeFor[int16]()

// countErrors counts every nonzero ErrorCode field of resp, at any depth (top level, topics,
// partitions, members). It walks by reflection, so it is for the answers off the hot path; Produce
// and Fetch count their codes as they set them.
func (st *Stats) countErrors(resp kmsg.Response) {
	st.walkErrors(reflect.ValueOf(resp))
}

func (st *Stats) walkErrors(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			st.walkErrors(v.Elem())
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Struct {
			return
		}
		for i := range v.Len() {
			st.walkErrors(v.Index(i))
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Name == "ErrorCode" && f.Type == errorCodeType {
				st.errorCode(int16(v.Field(i).Int()))
				continue
			}
			switch f.Type.Kind() {
			case reflect.Struct, reflect.Slice, reflect.Pointer:
				st.walkErrors(v.Field(i))
			}
		}
	}
}

// WriteMetrics writes the listener's counters in the Prometheus text exposition format, beside
// the native server's (engine/server.Server.WriteMetrics), whose names they mirror under
// sluice_kafka_. The engine's own metrics (produced and delivered bytes of both faces, partitions,
// groups) are the native server's to write, once.
func (s *Server) WriteMetrics(w io.Writer) {
	st := &s.stats
	fmt.Fprintf(w, "# HELP sluice_kafka_connections Open Kafka-protocol connections.\n# TYPE sluice_kafka_connections gauge\nsluice_kafka_connections %d\n", st.Connections.Load())
	writeCounter(w, "sluice_kafka_connections_accepted_total", "Kafka-protocol connections accepted.", st.Accepted.Load())
	writeCounter(w, "sluice_kafka_connections_refused_total", "Kafka-protocol connections refused by the connection limit.", st.Refused.Load())
	writeCounter(w, "sluice_kafka_protocol_errors_total", "Kafka-protocol connections closed for a malformed, oversized or unsupported request.", st.ProtocolErrors.Load())
	writeCounter(w, "sluice_kafka_sasl_failures_total", "Kafka-protocol SASL authentication steps that failed.", st.SASLFailures.Load())
	writeCounter(w, "sluice_kafka_produce_records_total", "Records stored by Kafka Produce requests.", st.ProduceRecords.Load())
	writeCounter(w, "sluice_kafka_produce_bytes_total", "Record batch bytes stored by Kafka Produce requests.", st.ProduceBytes.Load())
	writeCounter(w, "sluice_kafka_fetch_bytes_total", "Record batch bytes carried by Kafka Fetch answers.", st.FetchBytes.Load())

	fmt.Fprintln(w, "# HELP sluice_kafka_requests_total Kafka-protocol requests read, by API key.")
	fmt.Fprintln(w, "# TYPE sluice_kafka_requests_total counter")
	for key := range int16(maxCountedKey) {
		_, served := s.versions(key)
		n := st.requests[key].Load()
		if !served && n == 0 {
			continue // every API served has a series from the start; others once seen
		}
		name := kmsg.NameForKey(key)
		if name == "" {
			name = "Unknown"
		}
		fmt.Fprintf(w, "sluice_kafka_requests_total{api=%q,key=\"%d\"} %d\n", name, key, n)
	}
	if n := st.requestsOther.Load(); n > 0 {
		fmt.Fprintf(w, "sluice_kafka_requests_total{api=\"Unknown\",key=\"other\"} %d\n", n)
	}

	fmt.Fprintln(w, "# HELP sluice_kafka_errors_total Kafka error codes answered, by code (partition- and member-level codes each count).")
	fmt.Fprintln(w, "# TYPE sluice_kafka_errors_total counter")
	for i := range st.errors {
		n := st.errors[i].Load()
		if n == 0 {
			continue
		}
		code := int16(i - 1)
		name := "UNKNOWN_SERVER_ERROR"
		if e := kerr.TypedErrorForCode(code); e != nil {
			name = e.Message
		}
		fmt.Fprintf(w, "sluice_kafka_errors_total{code=\"%d\",name=%q} %d\n", code, name, n)
	}
}

func writeCounter(w io.Writer, name, help string, v uint64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
}
