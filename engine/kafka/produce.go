package kafka

import (
	"errors"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// Produce. acks maps onto the engine's durability: 0 none (no answer), 1 written (answered once
// the batches are in the partition's mapped segment), -1 fsync (answered once an fdatasync covers
// them; a memory-only topic answers at written). Options.MinDurability raises what is stored and
// synced, never what is answered. Batches are appended in place from gnet's buffer (the one copy);
// idempotent batches (producer id >= 0) go through the engine's producer-id/sequence deduplication,
// so a resend is answered with the offsets it got the first time. A transactional Produce (one
// with a transactional id) is first checked against the id's producer id and epoch (txn.go), and
// its batches open the engine's transaction in each partition.

// durabilityOf maps acks onto a durability; ok is false for an acks Kafka does not define.
func durabilityOf(acks int16) (wire.Durability, bool) {
	switch acks {
	case 0:
		return wire.DurabilityNone, true
	case 1:
		return wire.DurabilityWritten, true
	case -1:
		return wire.DurabilityFsync, true
	}
	return 0, false
}

// produceHook, when set (tests only), runs on the loop after a Produce's appends, before its answer
// is queued or held for a sync.
var produceHook atomic.Pointer[func()]

// produce serves the Produce request decoded into c.prodReq. It allocates nothing per record; the
// answer reuses c.prodResp.
func (c *conn) produce(h header) {
	// Set before the Stopping checks below and read by Close after it sets Stopping (both
	// sequentially consistent): either this Produce sees the listener stopping and stores nothing,
	// or Close sees it in progress and waits for its answer.
	c.producing.Store(true)
	defer c.producing.Store(false)
	req := &c.prodReq
	e := c.srv.e
	resp := &c.prodResp
	resp.Default()
	resp.SetVersion(h.version)
	resp.Topics = resp.Topics[:0]
	d, okAcks := durabilityOf(req.acks)
	if d < c.srv.opts.MinDurability {
		d = c.srv.opts.MinDurability
	}
	seq := c.q.headSeq + uint64(c.q.n) // the slot this answer takes, if it must wait
	waits, bytes, failed := 0, 0, false
	stored, storedBytes := int64(0), 0
	st := &c.srv.stats
	if req.transactional {
		// Held across the appends: an InitProducerId fencing this producer waits for them (txn.go).
		c.srv.txns.mu.RLock()
	}
	for i := range req.topics {
		rt := &req.topics[i]
		rtp := c.respTopic(rt.name)
		topic := e.TopicByName(rt.name)
		for j := range rt.parts {
			rp := &rt.parts[j]
			rpp := c.respPartition(rtp, rp.id)
			var code int16
			var txn *kafkaTxn // the transactional id's state, for a transactional Produce
			switch {
			case !okAcks:
				code = errInvalidRequiredAcks
			case c.srv.conns.Stopping():
				code = errRequestTimedOut // nothing stored: the client sends it again after reconnecting
			case !auth.MayTopic(c.srv.acl(), c.principal, auth.ActProduce, rt.name):
				code = errTopicAuthorization
			case topic == nil || topic.Partition(rp.id) == nil:
				code = errUnknownTopicOrPartition
			case req.transactional:
				txn, code = c.srv.txns.checkProduceLocked(rp.records)
			}
			if code != errNone {
				rpp.ErrorCode, failed = code, true
				st.errorCode(code)
				continue
			}
			p := topic.Partition(rp.id)
			base, last, err := p.Append(rp.records)
			if err != nil {
				rpp.ErrorCode, failed = kafkaCode(err), true
				if errors.Is(err, wire.ErrCorrupt) || errors.Is(err, wire.ErrTruncated) {
					rpp.ErrorCode = errCorruptMessage
				}
				st.errorCode(rpp.ErrorCode)
				continue
			}
			if txn != nil {
				txn.produced.Store(true)
			}
			stored += last - base + 1
			storedBytes += len(rp.records)
			rpp.BaseOffset, rpp.LogStartOffset = base, p.StartOffset()
			if d != wire.DurabilityFsync || topic.Memory() {
				continue
			}
			p.RequestSync()
			if req.acks != -1 || p.SyncedOffset() > last {
				continue // synced already, or nobody waits for it
			}
			c.watch(p)
			c.acks = append(c.acks, ackWait{seq: seq, part: p, last: last})
			waits++
			bytes += len(rp.records)
		}
	}
	if req.transactional {
		c.srv.txns.mu.RUnlock()
	}
	if hook := produceHook.Load(); hook != nil {
		(*hook)()
	}
	if stored > 0 {
		st.ProduceRecords.Add(uint64(stored))
		st.ProduceBytes.Add(uint64(storedBytes))
	}
	if req.acks == 0 {
		if failed {
			// No answer to carry the error: close, as Kafka does, so the client notices.
			c.protocolError("produce with acks=0 failed")
		}
		return
	}
	if waits == 0 && c.q.n == 0 {
		c.out = appendResponse(c.out, h.corr, resp)
		return
	}
	_, s := c.q.push()
	s.buf, s.ready, s.acks, s.produceBytes = appendResponse(nil, h.corr, resp), true, waits, bytes
	c.inflightProduce += bytes
	c.waitingAcks.Store(int64(len(c.acks)))
	if waits > 0 {
		c.releaseAcks() // the flusher may have synced between the append and the Watch
	}
}

// respTopic appends an answer topic to c.prodResp, reusing the element's partition slice.
func (c *conn) respTopic(name string) *kmsg.ProduceResponseTopic {
	r := &c.prodResp
	if len(r.Topics) < cap(r.Topics) {
		r.Topics = r.Topics[:len(r.Topics)+1]
	} else {
		r.Topics = append(r.Topics, kmsg.ProduceResponseTopic{})
	}
	t := &r.Topics[len(r.Topics)-1]
	t.Topic, t.Partitions = name, t.Partitions[:0]
	return t
}

// respPartition appends an answer partition to t with Kafka's defaults.
func (c *conn) respPartition(t *kmsg.ProduceResponseTopic, id int32) *kmsg.ProduceResponseTopicPartition {
	if len(t.Partitions) < cap(t.Partitions) {
		t.Partitions = t.Partitions[:len(t.Partitions)+1]
	} else {
		t.Partitions = append(t.Partitions, kmsg.ProduceResponseTopicPartition{})
	}
	p := &t.Partitions[len(t.Partitions)-1]
	*p = kmsg.ProduceResponseTopicPartition{Partition: id, BaseOffset: -1, LogAppendTime: -1, LogStartOffset: -1}
	p.CurrentLeader.LeaderID, p.CurrentLeader.LeaderEpoch = -1, -1
	return p
}
