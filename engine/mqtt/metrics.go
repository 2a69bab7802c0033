package mqtt

import (
	"fmt"
	"io"
	"sync/atomic"
	"unsafe"
)

// cacheLine is the coherence unit the hot counters are padded to: they are bumped by every event
// loop, and two counters sharing a line would bounce it between cores on every packet (false
// sharing), as in engine/kafka.
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

// Stats are the listener's counters, written in Prometheus' text format by Server.WriteMetrics.
// Any goroutine may read them.
type Stats struct {
	Connections      gauge   // open connections, TCP and TLS
	Subscriptions    gauge   // MQTT subscriptions of connected clients
	Accepted         counter // connections accepted, including those refused at once
	Refused          counter // connections refused by MaxConnections
	Connects         counter // CONNECTs accepted
	ConnectRefused   counter // CONNECTs refused (CONNACK with a failure code)
	AuthFailures     counter // CONNECTs with wrong or missing credentials
	ProtocolErrors   counter // connections closed for a malformed or oversized packet or a protocol violation
	KeepAliveExpired counter // connections closed for silence past 1.5 times their keep-alive
	Takeovers        counter // connections closed because another connected with their client id
	SessionsExpired  counter // persistent sessions ended by their expiry interval
	WillsPublished   counter // wills published
	PublishRefused   counter // inbound PUBLISHes not stored (denied, invalid topic, storage error)
	SubscribeRefused counter // subscriptions refused (SUBACK failure code)
	DroppedTooLarge  counter // deliveries dropped for exceeding the client's maximum packet size
	// DuplicatesDropped counts DUP PUBLISHes found stored already (acknowledged, not stored again).
	DuplicatesDropped counter
	// PublishedIn / PublishedInBytes count the PUBLISHes stored and their payload bytes;
	// PublishedOut / PublishedOutBytes the PUBLISHes delivered and theirs.
	PublishedIn       counter
	PublishedInBytes  counter
	PublishedOut      counter
	PublishedOutBytes counter

	// packetsIn and packetsOut count packets by MQTT packet type (0-15). Not padded: the publish
	// counters above take the hot path's bumps.
	packetsIn  [16]atomic.Uint64
	packetsOut [16]atomic.Uint64
}

func (st *Stats) packetIn(t byte)  { st.packetsIn[t&15].Add(1) }
func (st *Stats) packetOut(t byte) { st.packetsOut[t&15].Add(1) }

// PacketsIn returns how many packets of MQTT type t (1 CONNECT ... 15 AUTH) were read.
func (st *Stats) PacketsIn(t byte) uint64 { return st.packetsIn[t&15].Load() }

// PacketsOut returns how many packets of MQTT type t were written.
func (st *Stats) PacketsOut(t byte) uint64 { return st.packetsOut[t&15].Load() }

var packetNames = [16]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

// WriteMetrics writes the listener's counters as sluice_mqtt_* metrics in Prometheus' text format.
func (s *Server) WriteMetrics(w io.Writer) {
	st := &s.stats
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	count := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	connected, offline := s.Sessions()
	gauge("sluice_mqtt_connections", "Open MQTT connections.", st.Connections.Load())
	gauge("sluice_mqtt_sessions_connected", "MQTT sessions held by a connection.", int64(connected))
	gauge("sluice_mqtt_sessions_offline", "Persistent MQTT sessions kept for clients not connected.", int64(offline))
	gauge("sluice_mqtt_subscriptions", "MQTT subscriptions of connected clients.", st.Subscriptions.Load())
	gauge("sluice_mqtt_retained_messages", "Retained MQTT messages.", int64(s.Retained()))
	count("sluice_mqtt_connections_accepted_total", "MQTT connections accepted, including those refused at once.", st.Accepted.Load())
	count("sluice_mqtt_connections_refused_total", "MQTT connections refused by the connection limit.", st.Refused.Load())
	count("sluice_mqtt_connects_total", "MQTT CONNECTs accepted.", st.Connects.Load())
	count("sluice_mqtt_connects_refused_total", "MQTT CONNECTs refused.", st.ConnectRefused.Load())
	count("sluice_mqtt_auth_failures_total", "MQTT CONNECTs with wrong or missing credentials.", st.AuthFailures.Load())
	count("sluice_mqtt_protocol_errors_total", "MQTT connections closed for a malformed or oversized packet or a protocol violation.", st.ProtocolErrors.Load())
	count("sluice_mqtt_keepalive_expired_total", "MQTT connections closed past their keep-alive.", st.KeepAliveExpired.Load())
	count("sluice_mqtt_takeovers_total", "MQTT connections closed by another connecting with their client id.", st.Takeovers.Load())
	count("sluice_mqtt_sessions_expired_total", "Persistent MQTT sessions ended by their expiry.", st.SessionsExpired.Load())
	count("sluice_mqtt_wills_published_total", "MQTT wills published.", st.WillsPublished.Load())
	count("sluice_mqtt_publish_refused_total", "Inbound MQTT PUBLISHes not stored.", st.PublishRefused.Load())
	count("sluice_mqtt_subscribe_refused_total", "MQTT subscriptions refused.", st.SubscribeRefused.Load())
	count("sluice_mqtt_dropped_too_large_total", "MQTT deliveries dropped for exceeding the client's maximum packet size.", st.DroppedTooLarge.Load())
	count("sluice_mqtt_duplicates_dropped_total", "MQTT PUBLISHes resent (DUP) and found stored already.", st.DuplicatesDropped.Load())
	count("sluice_mqtt_published_in_total", "MQTT PUBLISHes stored.", st.PublishedIn.Load())
	count("sluice_mqtt_published_in_bytes_total", "Payload bytes of the MQTT PUBLISHes stored.", st.PublishedInBytes.Load())
	count("sluice_mqtt_published_out_total", "MQTT PUBLISHes delivered.", st.PublishedOut.Load())
	count("sluice_mqtt_published_out_bytes_total", "Payload bytes of the MQTT PUBLISHes delivered.", st.PublishedOutBytes.Load())
	fmt.Fprintf(w, "# HELP sluice_mqtt_packets_total MQTT packets by direction and type.\n# TYPE sluice_mqtt_packets_total counter\n")
	for t := 1; t < 16; t++ {
		fmt.Fprintf(w, "sluice_mqtt_packets_total{direction=\"in\",type=%q} %d\n", packetNames[t], st.packetsIn[t].Load())
		fmt.Fprintf(w, "sluice_mqtt_packets_total{direction=\"out\",type=%q} %d\n", packetNames[t], st.packetsOut[t].Load())
	}
}
