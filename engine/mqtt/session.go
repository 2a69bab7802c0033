package mqtt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/engine"
)

// Sessions. A session is keyed by client id and held by at most one connection; a CONNECT with a
// held client id closes the holder first (takeover, DISCONNECT 0x8E on MQTT 5). A clean session
// (MQTT 3.1.1 clean session 1, MQTT 5 session expiry 0) ends with its connection. A persistent
// one outlives it: its subscriptions are stored in DATA/mqtt/sessions/<sha256 of the client id>.json
// (disk.WriteFileAtomic: temp file, fdatasync, rename, directory fsync) whenever they change, and
// the positions of its subscriptions are consumer-group offsets in the engine's offset store
// (subscribe.go), so both survive a restart. Its QoS 2 state (the inbound packet ids awaiting
// PUBREL, the PUBRELs awaiting PUBCOMP) is appended to a flow log beside the file (flowlog.go).
// How far each partition was sent (for DUP) is stored with the session file when the connection
// ends (and at SUBSCRIBE): after a crash, unacknowledged deliveries are sent again without DUP.
//
// A persistent session expires its expiry interval after its connection ended (MQTT 3.1.1's after
// Options.MaxSessionExpiry): its file and its groups' offsets are deleted. A will with a delay
// (MQTT 5) is published when the delay or the session ends, whichever is first, unless the client
// reconnects before.

// stateDir is where the listener keeps its state: DATA/mqtt.
func stateDir(e *engine.Engine) string { return filepath.Join(e.Options().DataDir, "mqtt") }

var errUnexpectedAck = errors.New("mqtt: acknowledgement for a packet id in another state")

// sentKey names a partition as a subscription's group reads it, for DUP.
type sentKey struct {
	group, topic string
	part         int32
}

// session is one client id's session state. The fields under "holder" are owned by the
// connection holding the session (its loop) and by nobody while none does; the table's mutex
// hands them over.
type session struct {
	id   string
	hash uint32 // FNV-1a of id: the partition of its publishes

	// Guarded by sessionTable.mu:
	holder     *conn
	waiters    []func() // claims waiting for the holder to let go
	persistent bool
	expiry     time.Duration
	offlineAt  time.Time // when the last holder let go; zero while held

	// Holder's:
	subs   map[string]subSpec
	qos2In map[uint16]bool
	relOut map[uint16]struct{}
	sent   map[sentKey]int64
	// flows is the QoS 2 flow log open for appending (flowlog.go), nil until the holder first
	// writes to it; flowRecs counts the records appended since its last compaction.
	flows    *os.File
	flowRecs int
	flowBuf  [3]byte
}

func newSession(id string) *session {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &session{id: id, hash: h.Sum32(), subs: map[string]subSpec{}, qos2In: map[uint16]bool{},
		relOut: map[uint16]struct{}{}, sent: map[sentKey]int64{}}
}

// storedSession is a persistent session's file.
type storedSession struct {
	ClientID  string    `json:"client_id"`
	ExpiryS   int64     `json:"expiry_s"`
	OfflineAt time.Time `json:"offline_at,omitzero"`
	Subs      []subSpec `json:"subscriptions"`
	// Sent is how far each partition's records were sent to the session (for DUP on redelivery).
	Sent []storedSent `json:"sent,omitempty"`
}

// storedSent is one entry of session.sent: the highest offset of the partition sent to the
// session through the group.
type storedSent struct {
	Group  string `json:"group"`
	Topic  string `json:"topic"`
	Part   int32  `json:"partition"`
	Offset int64  `json:"offset"`
}

// snapshot is what store writes for s. Holder only.
func (s *session) snapshot() storedSession {
	st := storedSession{ClientID: s.id, ExpiryS: int64(s.expiry / time.Second)}
	for _, sp := range s.subs {
		st.Subs = append(st.Subs, sp)
	}
	for k, off := range s.sent {
		st.Sent = append(st.Sent, storedSent{Group: k.group, Topic: k.topic, Part: k.part, Offset: off})
	}
	return st
}

// delayedWill is a will waiting for its delay (MQTT 5) or its session's end.
type delayedWill struct {
	s         *session
	at        time.Time
	pk        *packets.Packet
	principal string
}

// sessionTable holds every session.
type sessionTable struct {
	srv *Server
	dir string // DATA/mqtt/sessions

	// writeMu serializes session file writes (a store racing a delete of the same file).
	writeMu sync.Mutex
	// stores counts the session files being written for released sessions; close waits for them.
	stores sync.WaitGroup

	mu    sync.Mutex
	m     map[string]*session
	wills []delayedWill
}

// openSessions loads the stored persistent sessions; each is offline from now (or from when it
// was stored offline).
func openSessions(srv *Server, dir string) (*sessionTable, error) {
	st := &sessionTable{srv: srv, dir: filepath.Join(dir, "sessions"), m: map[string]*session{}}
	if err := os.MkdirAll(st.dir, 0o755); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	ents, err := os.ReadDir(st.dir)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	now := time.Now()
	for _, ent := range ents {
		if !strings.HasSuffix(ent.Name(), ".json") {
			continue // a temp file left by a crash
		}
		b, err := os.ReadFile(filepath.Join(st.dir, ent.Name()))
		if err != nil {
			return nil, fmt.Errorf("mqtt: %w", err)
		}
		var ss storedSession
		if err := json.Unmarshal(b, &ss); err != nil {
			srv.log.Error("mqtt: a session file does not parse: skipped", "file", ent.Name(), "err", err)
			continue
		}
		s := newSession(ss.ClientID)
		s.persistent, s.expiry, s.offlineAt = true, time.Duration(ss.ExpiryS)*time.Second, now
		if !ss.OfflineAt.IsZero() {
			s.offlineAt = ss.OfflineAt
		}
		for _, sp := range ss.Subs {
			s.subs[sp.Filter] = sp
		}
		for _, se := range ss.Sent {
			s.sent[sentKey{group: se.Group, topic: se.Topic, part: se.Part}] = se.Offset
		}
		if err := st.loadFlows(s); err != nil {
			srv.log.Error("mqtt: a session's QoS 2 state does not parse: dropped", "client", s.id, "err", err)
			clear(s.qos2In)
			clear(s.relOut)
		}
		st.m[s.id] = s
	}
	return st, nil
}

func (st *sessionTable) file(id string) string {
	h := sha256.Sum256([]byte(id))
	return filepath.Join(st.dir, hex.EncodeToString(h[:16])+".json")
}

// store writes a persistent session's file. Any goroutine; it blocks on the disk.
func (st *sessionTable) store(ss storedSession) error {
	b, err := json.Marshal(ss)
	if err != nil {
		return err
	}
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	return disk.WriteFileAtomic(disk.OSFS{}, st.file(ss.ClientID), b, 0o600)
}

// remove deletes a session's file. Any goroutine.
func (st *sessionTable) remove(id string) {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	err1 := os.Remove(st.file(id))
	err2 := os.Remove(st.flowFile(id))
	if err1 == nil || err2 == nil {
		_ = disk.OSFS{}.SyncDir(st.dir)
	}
}

// claim hands the session of id to c and calls done on c's loop with it, whether it was present
// (resumed), or an error. A session held by another connection is taken from it first. clean
// starts afresh (a stored session's file and offsets are dropped).
func (st *sessionTable) claim(c *conn, id string, clean, persistent bool, expiry time.Duration,
	done func(c *conn, s *session, present bool, err error)) {
	st.mu.Lock()
	if c.gone.Load() {
		st.mu.Unlock()
		return // closed while waiting: nothing to hold the session for
	}
	s := st.m[id]
	if s != nil && s.holder != nil {
		old := s.holder
		s.waiters = append(s.waiters, func() { st.claim(c, id, clean, persistent, expiry, done) })
		st.mu.Unlock()
		st.srv.stats.Takeovers.Add(1)
		old.signal(flagKick)
		return
	}
	present := s != nil && !clean && s.persistent
	var dropped *session
	if s != nil && !present {
		dropped = s
		s = nil
	}
	if s == nil {
		if persistent && st.offlineLocked() >= st.srv.opts.MaxSessions {
			st.mu.Unlock()
			c.complete(func(c *conn) { done(c, nil, false, errors.New("mqtt: too many stored sessions")) })
			return
		}
		s = newSession(id)
		st.m[id] = s
	}
	// The client is back: a resumed session's delayed will is dropped; a clean start ended the old
	// session, and a will waits for its delay or its session's end, so that one goes out now (MQTT 5
	// 3.1.2.5).
	var ended *delayedWill
	if dropped != nil {
		ended = st.takeWillLocked(dropped)
	} else {
		st.takeWillLocked(s)
	}
	s.holder, s.persistent, s.expiry, s.offlineAt = c, persistent, expiry, time.Time{}
	st.mu.Unlock()
	if ended != nil {
		st.publishWill(ended.s.id, ended.principal, ended.pk)
	}
	if dropped != nil && dropped.persistent {
		// The flow log goes now, not in drop's goroutine: the new session may start one at once.
		st.writeMu.Lock()
		_ = os.Remove(st.flowFile(id))
		st.writeMu.Unlock()
		st.drop(dropped)
	}
	c.complete(func(c *conn) { done(c, s, present, nil) })
}

func (st *sessionTable) offlineLocked() int {
	n := 0
	for _, s := range st.m {
		if s.persistent {
			n++
		}
	}
	return n
}

// drop deletes a persistent session's stored state: its file and its groups' offsets. Off the
// loops (it touches the disk).
func (st *sessionTable) drop(s *session) {
	subs := maps.Clone(s.subs)
	go func() {
		st.remove(s.id)
		for _, sp := range subs {
			if _, f, shared, _ := splitShare(sp.Filter); !shared {
				if m, err := mapFilter(f); err == nil {
					for _, n := range m.names {
						st.srv.e.DeleteGroup(sessionGroup(s.id, n), func(error) {})
					}
				}
			}
		}
	}()
}

// release lets the session go when its connection closes, publishing the will now or queueing it
// for its delay. Called on c's loop.
func (st *sessionTable) release(c *conn, s *session, will *packets.Packet, delay time.Duration) {
	st.mu.Lock()
	if s.holder != c {
		st.mu.Unlock()
		return
	}
	s.holder = nil
	s.closeFlows()
	waiters := s.waiters
	s.waiters = nil
	var snap *storedSession
	if s.persistent && s.expiry > 0 {
		s.offlineAt = time.Now()
		ss := s.snapshot()
		ss.OfflineAt = s.offlineAt
		snap = &ss
	} else if len(waiters) == 0 {
		delete(st.m, s.id)
	}
	if will != nil {
		// A takeover (waiters) is the client reconnecting: its claim cancels the will as a
		// reconnection after the close does.
		if delay > 0 && s.persistent {
			if s.expiry < delay {
				delay = s.expiry
			}
			st.wills = append(st.wills, delayedWill{s: s, at: time.Now().Add(delay), pk: will, principal: c.principal})
			will = nil
		}
	}
	st.mu.Unlock()
	if will != nil {
		st.publishWill(s.id, c.principal, will)
	}
	if snap != nil {
		st.stores.Add(1)
		go func() {
			defer st.stores.Done()
			if err := st.store(*snap); err != nil {
				st.srv.log.Error("mqtt: storing a session", "client", s.id, "err", err)
			}
		}()
	}
	for _, w := range waiters {
		w()
	}
}

// abandon lets go of the session of id if c came to hold it after all (its claim finished as it
// closed, before CONNACK): as release, without a will.
func (st *sessionTable) abandon(c *conn, id string) {
	st.mu.Lock()
	s := st.m[id]
	held := s != nil && s.holder == c
	st.mu.Unlock()
	if held {
		st.release(c, s, nil, 0)
	}
}

func (st *sessionTable) publishWill(id, principal string, pk *packets.Packet) {
	st.srv.stats.WillsPublished.Add(1)
	go func() {
		if err := st.srv.publishInternal(id, principal, pk); err != nil {
			st.srv.log.Warn("mqtt: will not published", "client", id, "topic", pk.TopicName, "err", err)
		}
	}()
}

// takeWillLocked removes s's delayed will and returns it, or nil when it has none.
func (st *sessionTable) takeWillLocked(s *session) *delayedWill {
	if s == nil {
		return nil
	}
	for i, w := range st.wills {
		if w.s == s {
			st.wills = append(st.wills[:i], st.wills[i+1:]...)
			return &w
		}
	}
	return nil
}

// setExpiry changes a session's expiry interval (MQTT 5 DISCONNECT).
func (st *sessionTable) setExpiry(s *session, d time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if d > st.srv.opts.MaxSessionExpiry {
		d = st.srv.opts.MaxSessionExpiry
	}
	s.expiry = d
	if d == 0 && s.persistent {
		s.persistent = false
		st.drop(s)
	}
}

// tick publishes the wills whose delay has passed and ends the sessions whose expiry has.
func (st *sessionTable) tick(now time.Time) {
	st.mu.Lock()
	var due []delayedWill
	keep := st.wills[:0]
	for _, w := range st.wills {
		if !now.Before(w.at) {
			due = append(due, w)
		} else {
			keep = append(keep, w)
		}
	}
	st.wills = keep
	var expired []*session
	for id, s := range st.m {
		if s.holder == nil && s.persistent && !s.offlineAt.IsZero() && now.Sub(s.offlineAt) >= s.expiry {
			delete(st.m, id)
			expired = append(expired, s)
			for i, w := range st.wills {
				if w.s == s {
					due = append(due, w)
					st.wills = append(st.wills[:i], st.wills[i+1:]...)
					break
				}
			}
		}
	}
	st.mu.Unlock()
	for _, w := range due {
		st.publishWill(w.s.id, w.principal, w.pk)
	}
	for _, s := range expired {
		st.srv.stats.SessionsExpired.Add(1)
		st.drop(s)
	}
}

// close drops the delayed wills unpublished, as the wills of the connections a stopping broker
// closes are (the broker, not the client, went away), and waits for the session files of the
// sessions the closed connections released.
func (st *sessionTable) close() {
	st.mu.Lock()
	st.wills = nil
	st.mu.Unlock()
	st.stores.Wait()
}

// Sessions reports how many sessions the listener holds: connected, and stored offline.
func (s *Server) Sessions() (connected, offline int) {
	st := s.sessions
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, ss := range st.m {
		if ss.holder != nil {
			connected++
		} else {
			offline++
		}
	}
	return connected, offline
}
