package mqtt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/sluicemq/sluice/disk"
)

// The QoS 2 flow log. A persistent session's QoS 2 state (the inbound packet ids stored and
// awaiting PUBREL, the outbound ones released and awaiting PUBCOMP) must outlive a broker restart
// (MQTT 4.3.3, 4.4): a PUBREL for an id received before it is answered with PUBCOMP, and a resent
// PUBLISH with an id awaiting PUBREL is not stored again. Rewriting the session file at each of
// these steps would cost two atomic writes (four fsyncs) per message, so each step is a 3-byte
// record appended to DATA/mqtt/sessions/<sha256 of the client id>.qos2 before the packet that
// makes it visible (PUBREC, PUBCOMP, PUBREL) is written: op, then the packet id big-endian.
//
// A record is written with one write(2) on the holder's loop and not fsynced: it survives a broker
// crash or SIGKILL (the page cache holds it) but, as a record stored at durability none, not a
// power loss. The log is compacted (rewritten with disk.WriteFileAtomic to the ids in force) once
// it holds flowCompactEvery records, or when it ends in a torn record.
const (
	flowIn      = '+' // inbound id stored, PUBREC sent: awaiting PUBREL
	flowInDone  = '-' // inbound id released: PUBCOMP sent
	flowOut     = 'R' // outbound id released (PUBREL sent): awaiting PUBCOMP
	flowOutDone = 'C' // outbound id completed

	flowCompactEvery = 4096
)

func (st *sessionTable) flowFile(id string) string {
	return strings.TrimSuffix(st.file(id), ".json") + ".qos2"
}

// loadFlows replays a session's flow log into its maps. A torn last record is ignored.
func (st *sessionTable) loadFlows(s *session) error {
	b, err := os.ReadFile(st.flowFile(s.id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	for ; len(b) >= 3; b = b[3:] {
		id := uint16(b[1])<<8 | uint16(b[2])
		switch b[0] {
		case flowIn:
			s.qos2In[id] = true
		case flowInDone:
			delete(s.qos2In, id)
		case flowOut:
			s.relOut[id] = struct{}{}
		case flowOutDone:
			delete(s.relOut, id)
		default:
			return fmt.Errorf("mqtt: session %q: flow log record %#x", s.id, b[0])
		}
	}
	return nil
}

// logFlow appends one step of a QoS 2 exchange to a persistent session's flow log. Holder only,
// on its loop; a clean session logs nothing. An error is logged and the step stays in memory only.
func (c *conn) logFlow(op byte, id uint16) {
	s := c.sess
	if s == nil || !s.persistent {
		return
	}
	st := c.srv.sessions
	var err error
	switch {
	case s.flows == nil:
		err = st.openFlows(s)
	case s.flowRecs >= flowCompactEvery:
		err = st.compactFlows(s)
	}
	if err != nil {
		c.srv.log.Error("mqtt: QoS 2 state not stored", "client", s.id, "err", err)
		return
	}
	s.flowBuf = [3]byte{op, byte(id >> 8), byte(id)}
	if _, err := s.flows.Write(s.flowBuf[:]); err != nil {
		c.srv.log.Error("mqtt: QoS 2 state not stored", "client", s.id, "err", err)
		return
	}
	s.flowRecs++
}

// openFlows opens s's flow log for appending when its holder first writes to it. A session whose
// file is not written yet (a new one that has not subscribed) is stored first, so that a restart
// finds the session this log belongs to. A log holding flowCompactEvery records or more, or ending
// in a torn record, is compacted. Holder only.
func (st *sessionTable) openFlows(s *session) error {
	if _, err := os.Stat(st.file(s.id)); errors.Is(err, fs.ErrNotExist) {
		if err := st.store(s.snapshot()); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(st.flowFile(s.id), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("mqtt: %w", err)
	}
	s.flows, s.flowRecs = f, int(fi.Size()/3)
	if fi.Size()%3 != 0 || s.flowRecs >= flowCompactEvery {
		return st.compactFlows(s)
	}
	return nil
}

// compactFlows rewrites s's flow log to the ids in force and opens it for appending. Holder only.
func (st *sessionTable) compactFlows(s *session) error {
	if s.flows != nil {
		_ = s.flows.Close()
		s.flows = nil
	}
	b := make([]byte, 0, 3*(len(s.qos2In)+len(s.relOut)))
	for id := range s.qos2In {
		b = append(b, flowIn, byte(id>>8), byte(id))
	}
	for id := range s.relOut {
		b = append(b, flowOut, byte(id>>8), byte(id))
	}
	name := st.flowFile(s.id)
	st.writeMu.Lock()
	err := disk.WriteFileAtomic(disk.OSFS{}, name, b, 0o600)
	st.writeMu.Unlock()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	s.flows, s.flowRecs = f, 0
	return nil
}

// closeFlows closes s's flow log when its holder lets it go.
func (s *session) closeFlows() {
	if s.flows != nil {
		_ = s.flows.Close()
		s.flows = nil
	}
}
