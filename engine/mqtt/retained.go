package mqtt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/engine/auth"
)

// Retained messages: one per MQTT topic, the latest retained PUBLISH to it; one with an empty
// payload clears it. Each is a file DATA/mqtt/retained/<sha256 of the topic>.json written with
// disk.WriteFileAtomic (temp file, fdatasync, rename, directory fsync) before the PUBLISH is
// acknowledged; a clear removes the file and fsyncs the directory. All are loaded at start and kept
// in memory. A new subscription gets those its filter matches (and its principal may consume),
// with the retain flag set, after its SUBACK.

// retainedMsg is one retained message. Immutable once stored.
type retainedMsg struct {
	topic   string
	payload []byte
	qos     byte
	props   packets.Properties // MQTT 5 properties to send with it
	expires int64              // unix ms when its message expiry passes; 0: never
}

// storedRetained is a retained message's file.
type storedRetained struct {
	Topic       string                 `json:"topic"`
	Payload     []byte                 `json:"payload"`
	QoS         byte                   `json:"qos"`
	ExpiresMs   int64                  `json:"expires_ms,omitempty"`
	ContentType string                 `json:"content_type,omitempty"`
	Response    string                 `json:"response_topic,omitempty"`
	Correlation []byte                 `json:"correlation_data,omitempty"`
	Format      byte                   `json:"payload_format,omitempty"`
	User        []packets.UserProperty `json:"user_properties,omitempty"`
}

// retainedStore holds the retained messages.
type retainedStore struct {
	dir string
	log *slog.Logger

	writeMu sync.Mutex // serializes file writes, so the file order matches the map's

	mu sync.RWMutex // guards m
	m  map[string]*retainedMsg
}

func openRetained(dir string, log *slog.Logger) (*retainedStore, error) {
	rs := &retainedStore{dir: filepath.Join(dir, "retained"), log: log, m: map[string]*retainedMsg{}}
	if err := os.MkdirAll(rs.dir, 0o755); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	ents, err := os.ReadDir(rs.dir)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	for _, ent := range ents {
		if !strings.HasSuffix(ent.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(rs.dir, ent.Name()))
		if err != nil {
			return nil, fmt.Errorf("mqtt: %w", err)
		}
		var sr storedRetained
		if err := json.Unmarshal(b, &sr); err != nil {
			log.Error("mqtt: a retained message file does not parse: skipped", "file", ent.Name(), "err", err)
			continue
		}
		m := &retainedMsg{topic: sr.Topic, payload: sr.Payload, qos: sr.QoS, expires: sr.ExpiresMs}
		m.props.ContentType, m.props.ResponseTopic, m.props.CorrelationData, m.props.User = sr.ContentType, sr.Response, sr.Correlation, sr.User
		if sr.Format == 1 {
			m.props.PayloadFormat, m.props.PayloadFormatFlag = 1, true
		}
		rs.m[m.topic] = m
	}
	return rs, nil
}

// retainedFrom copies what a retained PUBLISH stores (pk may hold views of the input buffer).
func retainedFrom(pk *packets.Packet, topic string) *retainedMsg {
	m := &retainedMsg{topic: string([]byte(topic)), payload: append([]byte(nil), pk.Payload...), qos: pk.FixedHeader.Qos}
	p := &pk.Properties
	m.props.ContentType, m.props.ResponseTopic = string([]byte(p.ContentType)), string([]byte(p.ResponseTopic))
	m.props.CorrelationData = append([]byte(nil), p.CorrelationData...)
	if p.PayloadFormatFlag {
		m.props.PayloadFormat, m.props.PayloadFormatFlag = p.PayloadFormat, true
	}
	for _, u := range p.User {
		m.props.User = append(m.props.User, packets.UserProperty{Key: string([]byte(u.Key)), Val: string([]byte(u.Val))})
	}
	if p.MessageExpiryInterval > 0 {
		m.expires = time.Now().Add(time.Duration(p.MessageExpiryInterval) * time.Second).UnixMilli()
	}
	return m
}

func (rs *retainedStore) file(topic string) string {
	h := sha256.Sum256([]byte(topic))
	return filepath.Join(rs.dir, hex.EncodeToString(h[:16])+".json")
}

// set stores m as its topic's retained message (an empty payload clears it) and returns once that
// is durable. Any goroutine; it blocks on the disk.
func (rs *retainedStore) set(m *retainedMsg) error {
	rs.writeMu.Lock()
	defer rs.writeMu.Unlock()
	path := rs.file(m.topic)
	if len(m.payload) == 0 {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("mqtt: clearing a retained message: %w", err)
		}
		if err := (disk.OSFS{}).SyncDir(rs.dir); err != nil {
			return fmt.Errorf("mqtt: clearing a retained message: %w", err)
		}
		rs.mu.Lock()
		delete(rs.m, m.topic)
		rs.mu.Unlock()
		return nil
	}
	sr := storedRetained{Topic: m.topic, Payload: m.payload, QoS: m.qos, ExpiresMs: m.expires,
		ContentType: m.props.ContentType, Response: m.props.ResponseTopic, Correlation: m.props.CorrelationData,
		Format: m.props.PayloadFormat, User: m.props.User}
	b, err := json.Marshal(sr)
	if err != nil {
		return err
	}
	if err := disk.WriteFileAtomic(disk.OSFS{}, path, b, 0o600); err != nil {
		return fmt.Errorf("mqtt: storing a retained message: %w", err)
	}
	rs.mu.Lock()
	rs.m[m.topic] = m
	rs.mu.Unlock()
	return nil
}

// matching returns the retained messages filter matches whose Sluice topic principal may
// consume, in topic order, skipping expired ones.
func (rs *retainedStore) matching(filter string, acl auth.ACL, principal string) []*retainedMsg {
	now := time.Now().UnixMilli()
	var out []*retainedMsg
	rs.mu.RLock()
	for t, m := range rs.m {
		if !matchFilter(filter, t) || m.expires > 0 && m.expires <= now {
			continue
		}
		if name, err := SluiceTopic(t); err != nil || !auth.MayTopic(acl, principal, auth.ActConsume, name) {
			continue
		}
		out = append(out, m)
	}
	rs.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].topic < out[j].topic })
	return out
}

// Retained reports how many retained messages the listener holds.
func (s *Server) Retained() int {
	s.retained.mu.RLock()
	defer s.retained.mu.RUnlock()
	return len(s.retained.m)
}
