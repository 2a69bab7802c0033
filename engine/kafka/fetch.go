package kafka

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
)

// Fetch. A Fetch takes its slot in the answer order and is evaluated when it reaches the head of
// the queue: each partition is read in place (engine.Reader.Read: whole stored batches, from the
// one holding the fetch offset), and if the bytes found reach the request's min bytes, or its max
// wait has passed, or any partition has an error, the answer is written at once with writev: the
// answer's own bytes from the connection's scratch, the record batches straight from the segment
// mappings. Otherwise the Readers are armed to wake the loop when a partition grows, a timer wakes
// it at the max wait, and the slot waits; the loop is never held.
//
// Bounds: the answer carries at most min(max bytes, Options.MaxFetchBytes) of records, and each
// partition at most its partition max bytes, except that the first batch found is always sent
// whole (as Kafka does, so a batch larger than the limits cannot stall a consumer). While the
// connection's outbound buffer holds more than MaxOutboundBytes, or anything while the listener's
// connections together hold more than MaxOutboundTotal, the answer waits (the ticker looks again);
// while the total is over its budget an answer carries at most 64 KiB beyond its first batch. Fetch sessions are not kept: a full fetch (session id 0) is answered with session id 0,
// which tells the client none was created, and an incremental one gets FETCH_SESSION_ID_NOT_FOUND.
//
// Isolation (docs/kafka.md, Fetch): every answer reports the partition's last stable offset
// (engine.Partition.StableOffset: the first offset of its oldest open transaction, else its end),
// read before the high watermark so it is never above it. A read_uncommitted fetch reads up to the
// end and its aborted_transactions are null. A read_committed fetch reads only below the LSO
// (engine.Reader.ReadStable), waits for the LSO to move rather than the end (WaitStable), and lists
// the aborted transactions (producer id, first offset) whose ranges overlap the batches it returns,
// as Kafka does; the client drops their batches and every control batch itself.
//
// Answer layout (Kafka's FetchResponse v4-v12; compact forms from v12, the flexible versions):
//
//	throttle_ms int32 | error_code int16 (v7+) | session_id int32 (v7+) | topics [
//	  name string | partitions [
//	    partition int32 | error_code int16 | high_watermark int64 | last_stable_offset int64 |
//	    log_start_offset int64 (v5+) | aborted_transactions nullable array (null unless
//	    read_committed: appendAborted) |
//	    preferred_read_replica int32 (v11+) | records nullable bytes | tags (v12) ]
//	  | tags (v12) ] | tags (v12)

// fetchWait is a Fetch waiting in its slot. Loop-owned; a connection reuses its fetchWaits (see
// conn.fetchFree), request arrays and timer included.
type fetchWait struct {
	req      fetchReq
	corr     int32
	deadline int64 // unix nanos after which it is answered with whatever there is
	// timer wakes the loop at deadline; made the first time one of the connection's fetches waits
	// and reset for the next (a stale firing only makes the loop look again). armed: it runs for
	// this request.
	timer *time.Timer
	armed bool
}

// fetchPart is one partition's result, between reading and writing. Loop-owned scratch.
type fetchPart struct {
	topic int // index in req.Topics
	part  int32
	code  int16
	hw    int64
	lso   int64 // last stable offset, read before hw
	start int64
	d     engine.Delivery // records read in place; released once written or abandoned
}

// fetchSeg marks where in c.fbuf a partition's records go.
type fetchSeg struct {
	at   int
	data []byte
}

// fetch decodes a Fetch request into a fetchWait of the connection's and takes its slot.
func (c *conn) fetch(h header, body []byte) {
	var fw *fetchWait
	if n := len(c.fetchFree); n > 0 {
		fw, c.fetchFree = c.fetchFree[n-1], c.fetchFree[:n-1]
	} else {
		fw = &fetchWait{}
	}
	fw.req.version = h.version
	if err := fw.req.decode(body); err != nil {
		c.fetchFree = append(c.fetchFree, fw)
		c.protocolError("malformed fetch", "err", err)
		return
	}
	_, s := c.q.push()
	wait := time.Duration(max(fw.req.maxWaitMillis, 0)) * time.Millisecond
	fw.corr, fw.deadline, fw.armed = h.corr, time.Now().Add(wait).UnixNano(), false
	s.fetch = fw
}

// maxFetchFree bounds the fetchWaits a connection keeps for reuse: clients have one or a few
// Fetches outstanding per broker.
const maxFetchFree = 4

// freeFetch returns fw, answered, for the connection's next Fetch.
func (c *conn) freeFetch(fw *fetchWait) {
	if len(c.fetchFree) < maxFetchFree {
		c.fetchFree = append(c.fetchFree, fw)
	}
}

// serveFetch evaluates the Fetch at the head of the queue and writes its answer when due. It
// reports whether it did; if not, a wake-up is arranged.
func (c *conn) serveFetch(fw *fetchWait) bool {
	if c.outboundFull() {
		c.blocked.Store(true)
		return false
	}
	req := &fw.req
	if req.version >= 7 && req.sessionID != 0 {
		c.writeFetch(fw, errFetchSessionIDNotFound, nil)
		return true
	}
	for attempt := 0; ; attempt++ {
		parts, total, urgent, cold := c.readFetch(req)
		now := time.Now().UnixNano()
		if urgent || total >= int(max(req.minBytes, 1)) || now >= fw.deadline {
			c.writeFetch(fw, errNone, parts)
			return true
		}
		for i := range parts {
			parts[i].d.Release()
		}
		armed := cold // a cold read wakes the loop when its pages are in
		if !cold {
			armed = c.armFetch(req)
		}
		if !armed && attempt < 3 {
			continue // data arrived while arming: read again
		}
		if !fw.armed {
			fw.armed = true
			if fw.timer == nil {
				fw.timer = time.AfterFunc(time.Duration(fw.deadline-now), func() { c.signal(flagRetry) })
			} else {
				fw.timer.Reset(time.Duration(fw.deadline - now))
			}
		}
		return false
	}
}

// readFetch reads every partition of req into c.fparts. urgent: some partition has an error, which
// is answered at once; cold: some read waits for its pages.
func (c *conn) readFetch(req *fetchReq) (parts []fetchPart, total int, urgent, cold bool) {
	e, acl := c.srv.e, c.srv.acl()
	limit := c.fetchBudget()
	if req.maxBytes > 0 {
		limit = min(limit, int(req.maxBytes))
	}
	parts = c.fparts[:0]
	for ti := range req.topics {
		rt := &req.topics[ti]
		topic := e.TopicByName(rt.name)
		mayRead := auth.MayTopic(acl, c.principal, auth.ActConsume, rt.name)
		for pi := range rt.parts {
			rp := &rt.parts[pi]
			fp := fetchPart{topic: ti, part: rp.id, hw: -1, lso: -1, start: -1}
			p := partitionOf(topic, rp.id)
			switch {
			case !mayRead:
				fp.code = errTopicAuthorization
			case p == nil:
				fp.code = errUnknownTopicOrPartition
			default:
				fp.lso = p.StableOffset() // first: the end only grows, so lso <= hw
				fp.hw, fp.start = p.NextOffset(), p.StartOffset()
				room := min(int(max(rp.maxBytes, 1)), limit-total)
				if room <= 0 && total > 0 {
					break // the answer is full: this partition's records wait for the next fetch
				}
				var d engine.Delivery
				var err error
				if req.isolation == readCommitted {
					d, err = c.reader(p).ReadStable(rp.offset, max(room, 1), fp.lso)
				} else {
					d, err = c.reader(p).Read(rp.offset, max(room, 1))
				}
				switch {
				case errors.Is(err, engine.ErrColdRead):
					cold = true
				case err != nil:
					fp.code = kafkaCode(err)
				default:
					fp.d = d
					total += len(d.Batches())
				}
			}
			if fp.code != errNone {
				urgent = true
			}
			parts = append(parts, fp)
		}
	}
	c.fparts = parts
	return parts, total, urgent, cold
}

// armFetch asks every partition of req to wake the loop when it grows past what was just read: its
// end (read_committed: its last stable offset), or the fetch offset if that is further. It reports
// false when one already has (read again instead of waiting).
func (c *conn) armFetch(req *fetchReq) bool {
	for ti := range req.topics {
		rt := &req.topics[ti]
		topic := c.srv.e.TopicByName(rt.name)
		for pi := range rt.parts {
			rp := &rt.parts[pi]
			p := partitionOf(topic, rp.id)
			if p == nil {
				continue
			}
			r := c.reader(p)
			if req.isolation == readCommitted {
				if !r.WaitStable(max(rp.offset, p.StableOffset())) {
					return false
				}
			} else if !r.WaitBeyond(max(rp.offset, p.NextOffset())) {
				return false
			}
		}
	}
	return true
}

// writeFetch encodes and writes the answer to fw from parts (read by readFetch), then releases
// them. top is the answer's top-level error code.
func (c *conn) writeFetch(fw *fetchWait, top int16, parts []fetchPart) {
	if fw.armed {
		fw.timer.Stop()
		fw.armed = false
	}
	req := &fw.req
	v := req.version
	flex := v >= 12
	b := c.fbuf[:0]
	b = append(b, 0, 0, 0, 0) // size, patched below
	b = binary.BigEndian.AppendUint32(b, uint32(fw.corr))
	if flex {
		b = append(b, 0) // response header tags
	}
	b = binary.BigEndian.AppendUint32(b, 0) // throttle_ms
	if v >= 7 {
		b = binary.BigEndian.AppendUint16(b, uint16(top))
		b = binary.BigEndian.AppendUint32(b, 0) // session id: none kept
	}
	segs := c.fseg[:0]
	records := 0
	// Topics in request order; parts are in request order, grouped by topic.
	nt := 0
	for i := range parts {
		if i == 0 || parts[i].topic != parts[i-1].topic {
			nt++
		}
	}
	b = appendArrayLen(b, flex, nt)
	for i := 0; i < len(parts); {
		ti := parts[i].topic
		j := i
		for j < len(parts) && parts[j].topic == ti {
			j++
		}
		b = appendString(b, flex, req.topics[ti].name)
		b = appendArrayLen(b, flex, j-i)
		for k := i; k < j; k++ {
			fp := &parts[k]
			b = binary.BigEndian.AppendUint32(b, uint32(fp.part))
			b = binary.BigEndian.AppendUint16(b, uint16(fp.code))
			b = binary.BigEndian.AppendUint64(b, uint64(fp.hw))
			b = binary.BigEndian.AppendUint64(b, uint64(fp.lso))
			if v >= 5 {
				b = binary.BigEndian.AppendUint64(b, uint64(fp.start))
			}
			data := fp.d.Batches()
			if req.isolation == readCommitted && fp.code == errNone {
				b = c.appendAborted(b, flex, fp)
			} else {
				b = appendArrayLen(b, flex, -1) // aborted transactions: null
			}
			if v >= 11 {
				b = binary.BigEndian.AppendUint32(b, ^uint32(0)) // preferred read replica: -1
			}
			b = appendBytesLen(b, flex, len(data))
			if len(data) > 0 {
				segs = append(segs, fetchSeg{at: len(b), data: data})
				records += len(data)
			}
			if flex {
				b = append(b, 0)
			}
		}
		if flex {
			b = append(b, 0)
		}
		i = j
	}
	if flex {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4+records))
	st := &c.srv.stats
	st.errorCode(top)
	for i := range parts {
		st.errorCode(parts[i].code)
	}
	if records > 0 {
		st.FetchBytes.Add(uint64(records))
	}
	c.fbuf, c.fseg = b, segs
	c.flush() // what precedes this answer goes first
	if len(segs) == 0 {
		c.out = append(c.out, b...)
	} else if !c.closed {
		iov := c.iov[:0]
		from := 0
		for _, s := range segs {
			iov = append(iov, b[from:s.at], s.data)
			from = s.at
		}
		iov = append(iov, b[from:])
		_, _ = c.t.Writev(iov)
		clear(iov)
		c.iov = iov[:0]
		c.srv.e.Delivered(records)
	}
	for i := range parts {
		parts[i].d.Release()
		parts[i] = fetchPart{}
	}
	clear(segs)
	c.fseg = segs[:0]
	if cap(c.fbuf) > 1<<20 {
		c.fbuf = nil
	}
}

// readCommitted is Fetch's and ListOffsets' isolation_level for read_committed (Kafka's, frozen).
const readCommitted = 1

// appendAborted appends the aborted_transactions array of a read_committed answer's partition: the
// aborted transactions whose ranges overlap its batches, from the first batch's base offset (the
// batch holding the fetch offset may begin below it) to the offset after the last. Kafka's layout:
//
//	aborted_transactions [ producer_id int64 | first_offset int64 | tags (v12) ]
//
// An answer without records has an empty array, as Kafka's.
func (c *conn) appendAborted(b []byte, flex bool, fp *fetchPart) []byte {
	data := fp.d.Batches()
	ab := c.faborted[:0]
	if len(data) >= 8 {
		from := int64(binary.BigEndian.Uint64(data)) // the first batch's base offset
		ab = fp.d.Partition.AbortedTxns(ab, from, fp.d.NextOffset())
	}
	b = appendArrayLen(b, flex, len(ab))
	for _, a := range ab {
		b = binary.BigEndian.AppendUint64(b, uint64(a.ProducerID))
		b = binary.BigEndian.AppendUint64(b, uint64(a.FirstOffset))
		if flex {
			b = append(b, 0)
		}
	}
	c.faborted = ab[:0]
	return b
}

// appendArrayLen appends an array length: int32, or in flexible versions uvarint n+1 (0: null).
func appendArrayLen(b []byte, flex bool, n int) []byte {
	if flex {
		return binary.AppendUvarint(b, uint64(n+1))
	}
	return binary.BigEndian.AppendUint32(b, uint32(int32(n)))
}

// appendBytesLen appends a bytes length prefix, int32 or compact.
func appendBytesLen(b []byte, flex bool, n int) []byte { return appendArrayLen(b, flex, n) }

// appendString appends a string, int16 length or compact.
func appendString(b []byte, flex bool, s string) []byte {
	if flex {
		b = binary.AppendUvarint(b, uint64(len(s)+1))
	} else {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	}
	return append(b, s...)
}
