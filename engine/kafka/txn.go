package kafka

import (
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// Transactions from Kafka producers (docs/kafka.md, "Transactions"). The listener is the
// transaction coordinator of every transactional id (FindCoordinator key type 1 names this
// broker) and maps Kafka's transaction APIs onto the engine's transactions, which are keyed by
// producer id (engine/txn.go):
//
//   - InitProducerId with a transactional id gives the id its producer id (a new one the first
//     time) at the next epoch, after aborting the transaction the previous epoch left open: a
//     producer of an older epoch is fenced from then on.
//   - Produce with a transactional id is checked against the id's producer id and epoch
//     (INVALID_PRODUCER_ID_MAPPING, INVALID_PRODUCER_EPOCH), then appended as the native face's
//     transactional batches are: the engine opens the transaction in each partition at its first
//     batch there, so AddPartitionsToTxn only checks and acknowledges.
//   - AddOffsetsToTxn checks; TxnOffsetCommit keeps the offsets with the transaction.
//   - EndTxn commits or aborts through engine.EndTxn; a commit then commits the kept offsets to
//     the offset store, and is answered once they are durable.
//
// The mapping from transactional id to producer id and epoch is held in memory: after a restart a
// transactional id gets a new producer id, and the engine has aborted every transaction left open
// (its recovery). The offsets of a committed transaction are committed after its markers are
// durable: a crash between the two leaves the records committed and the offsets not (the
// consumer-producer reads those records' inputs again).

// txnRegistry maps transactional ids to producer ids and epochs, and holds each id's transaction
// state. One per Server; the zero value is ready (the maps are made at the first InitProducerId).
type txnRegistry struct {
	// mu is held shared by a transactional Produce from its check to the end of its appends, and
	// exclusively by InitProducerId while it moves an id to its next epoch: a batch that passed the
	// check under the old epoch is in the engine's transaction before that transaction is aborted.
	mu sync.RWMutex
	// byID and byPID index the same entries; guarded by mu.
	byID  map[string]*kafkaTxn
	byPID map[int64]*kafkaTxn
}

// kafkaTxn is one transactional id's state. Fields guarded by txnRegistry.mu.
type kafkaTxn struct {
	id    string
	pid   int64
	epoch int16
	// offsets are TxnOffsetCommit's offsets of the open transaction, committed at its commit and
	// dropped at its end either way.
	offsets []txnOffset
	// produced is set when a batch of the open transaction was stored (by a Produce holding mu
	// shared, hence atomic) and cleared at its end: a commit finding it set and the engine's
	// transaction gone (its timeout aborted it) is refused INVALID_TXN_STATE.
	produced atomic.Bool
}

// txnOffset is one offset a transaction commits.
type txnOffset struct {
	group, topic string
	part         int32
	offset       int64
}

// checkLocked returns the state of transactional id for (pid, epoch), or the Kafka error code
// refusing them. Caller holds r.mu (either way).
func (r *txnRegistry) checkLocked(id string, pid int64, epoch int16) (*kafkaTxn, int16) {
	t := r.byID[id]
	switch {
	case t == nil || t.pid != pid:
		return nil, errInvalidProducerIDMapping
	case t.epoch != epoch:
		return nil, errProducerFenced
	}
	return t, errNone
}

// checkProduceLocked checks a transactional Produce's batch (its first: the engine checks that
// the rest are the same producer's): its producer must hold a transactional id at the batch's
// epoch. It returns the id's state, or the code refusing the batch. Caller holds r.mu shared.
func (r *txnRegistry) checkProduceLocked(batch []byte) (*kafkaTxn, int16) {
	h, err := wire.ParseBatchHeader(batch)
	if err != nil {
		return nil, errCorruptMessage
	}
	t := r.byPID[h.ProducerID]
	switch {
	case t == nil:
		return nil, errInvalidProducerIDMapping
	case t.epoch != h.ProducerEpoch:
		return nil, errInvalidProducerEpoch
	}
	return t, errNone
}

// fenced is the code a transaction API of this version answers for a fenced producer:
// PRODUCER_FENCED where the version knows it (KIP-588), INVALID_PRODUCER_EPOCH before.
func fenced(code int16, version, since int16) int16 {
	if code == errProducerFenced && version < since {
		return errInvalidProducerEpoch
	}
	return code
}

// initTxnProducer serves InitProducerId with a transactional id, off the loop: the id's next
// epoch (a new producer id the first time, or when the epoch would overflow), once the open
// transaction of the previous epoch is aborted. A request naming the id's producer id and an
// epoch other than its current one (KIP-360's bump) is fenced.
func (c *conn) initTxnProducer(h header, req *kmsg.InitProducerIDRequest) {
	s := c.srv
	id := *req.TransactionalID
	c.later(h.corr, func() (kmsg.Response, func(*conn), bool) {
		resp := kmsg.NewPtrInitProducerIDResponse()
		resp.SetVersion(h.version)
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		r := &s.txns
		r.mu.Lock()
		t := r.byID[id]
		if t != nil && req.Version >= 3 && req.ProducerID >= 0 && req.ProducerID == t.pid && req.ProducerEpoch != t.epoch {
			r.mu.Unlock()
			resp.ErrorCode = fenced(errProducerFenced, h.version, 4)
			return resp, nil, false
		}
		var oldPID int64 = -1
		var oldEpoch int16
		if t == nil {
			if r.byID == nil {
				r.byID, r.byPID = map[string]*kafkaTxn{}, map[int64]*kafkaTxn{}
			}
			t = &kafkaTxn{id: id, pid: s.nextProducerID.Add(1)}
			r.byID[id] = t
			r.byPID[t.pid] = t
		} else {
			oldPID, oldEpoch = t.pid, t.epoch
			t.offsets = nil
			t.produced.Store(false)
			if t.epoch >= 1<<15-2 { // the epoch would overflow: a new producer id
				delete(r.byPID, t.pid)
				t.pid, t.epoch = s.nextProducerID.Add(1), 0
				r.byPID[t.pid] = t
			} else {
				t.epoch++
			}
		}
		pid, epoch := t.pid, t.epoch
		r.mu.Unlock()
		if oldPID >= 0 {
			// The previous epoch's transaction, if open, is aborted before the new epoch is handed
			// out: the engine refuses a producer's batches of another epoch while one is open.
			if err := s.e.EndTxn(oldPID, oldEpoch, false); err != nil {
				s.log.Warn("kafka: aborting a fenced transaction", "transactional_id", id, "producer", oldPID, "err", err)
				resp.ErrorCode = kafkaCode(err)
				return resp, nil, false
			}
		}
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
		return resp, nil, false
	})
}

// addPartitionsToTxn checks the producer and each partition (the principal may produce to it, it
// exists) and acknowledges: the engine adds a partition to the transaction at its first batch.
func (c *conn) addPartitionsToTxn(h header, req *kmsg.AddPartitionsToTxnRequest) {
	resp := kmsg.NewPtrAddPartitionsToTxnResponse()
	resp.SetVersion(h.version)
	r := &c.srv.txns
	r.mu.RLock()
	_, code := r.checkLocked(req.TransactionalID, req.ProducerID, req.ProducerEpoch)
	r.mu.RUnlock()
	code = fenced(code, h.version, 2)
	acl := c.srv.acl()
	for _, rt := range req.Topics {
		t := kmsg.NewAddPartitionsToTxnResponseTopic()
		t.Topic = rt.Topic
		topic := c.srv.e.TopicByName(rt.Topic)
		may := auth.MayTopic(acl, c.principal, auth.ActProduce, rt.Topic)
		for _, part := range rt.Partitions {
			p := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			p.Partition = part
			switch {
			case code != errNone:
				p.ErrorCode = code
			case !may:
				p.ErrorCode = errTopicAuthorization
			case partitionOf(topic, part) == nil:
				p.ErrorCode = errUnknownTopicOrPartition
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	c.reply(h.corr, resp)
}

// addOffsetsToTxn checks the producer and the principal's right to the group.
func (c *conn) addOffsetsToTxn(h header, req *kmsg.AddOffsetsToTxnRequest) {
	resp := kmsg.NewPtrAddOffsetsToTxnResponse()
	resp.SetVersion(h.version)
	r := &c.srv.txns
	r.mu.RLock()
	_, code := r.checkLocked(req.TransactionalID, req.ProducerID, req.ProducerEpoch)
	r.mu.RUnlock()
	switch {
	case code != errNone:
		resp.ErrorCode = fenced(code, h.version, 2)
	case !auth.MayGroup(c.srv.acl(), c.principal, auth.ActConsume, req.Group):
		resp.ErrorCode = errGroupAuthorization
	}
	c.reply(h.corr, resp)
}

// txnOffsetCommit keeps the offsets with the producer's transaction; EndTxn commits them. Each
// partition needs the consume right on its topic and must exist. A group name native Sluice
// members are using is refused UNKNOWN_MEMBER_ID, as OffsetCommit refuses it (groups_offsets.go):
// the commit would overwrite their progress.
func (c *conn) txnOffsetCommit(h header, req *kmsg.TxnOffsetCommitRequest) {
	resp := kmsg.NewPtrTxnOffsetCommitResponse()
	resp.SetVersion(h.version)
	acl := c.srv.acl()
	mayGroup := auth.MayGroup(acl, c.principal, auth.ActConsume, req.Group)
	r := &c.srv.txns
	r.mu.Lock()
	t, code := r.checkLocked(req.TransactionalID, req.ProducerID, req.ProducerEpoch)
	code = fenced(code, h.version, 2)
	switch {
	case code != errNone:
	case !mayGroup:
		code = errGroupAuthorization
	case c.srv.coord.nativeMembers(req.Group):
		code = gErrUnknownMemberID
	}
	for _, rt := range req.Topics {
		ot := kmsg.NewTxnOffsetCommitResponseTopic()
		ot.Topic = rt.Topic
		topic := c.srv.e.TopicByName(rt.Topic)
		may := auth.MayTopic(acl, c.principal, auth.ActConsume, rt.Topic)
		for _, rp := range rt.Partitions {
			op := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			op.Partition = rp.Partition
			switch {
			case code != errNone:
				op.ErrorCode = code
			case !may:
				op.ErrorCode = errTopicAuthorization
			case partitionOf(topic, rp.Partition) == nil:
				op.ErrorCode = errUnknownTopicOrPartition
			default:
				t.offsets = append(t.offsets, txnOffset{group: req.Group, topic: rt.Topic, part: rp.Partition, offset: rp.Offset})
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	r.mu.Unlock()
	c.reply(h.corr, resp)
}

// endTxn serves EndTxn off the loop: engine.EndTxn commits or aborts the producer's transaction
// (a commit waits on fdatasyncs), then a commit's kept offsets are committed, and the answer is
// sent once they are durable.
func (c *conn) endTxn(h header, req *kmsg.EndTxnRequest) {
	s := c.srv
	c.later(h.corr, func() (kmsg.Response, func(*conn), bool) {
		resp := kmsg.NewPtrEndTxnResponse()
		resp.SetVersion(h.version)
		r := &s.txns
		r.mu.Lock()
		t, code := r.checkLocked(req.TransactionalID, req.ProducerID, req.ProducerEpoch)
		var offsets []txnOffset
		produced := false
		if t != nil {
			offsets, t.offsets = t.offsets, nil
			produced = t.produced.Swap(false)
		}
		r.mu.Unlock()
		if code != errNone {
			resp.ErrorCode = fenced(code, h.version, 2)
			return resp, nil, false
		}
		if req.Commit && produced && !s.e.TxnOpen(req.ProducerID) {
			// The engine aborted it (Options.TxnTimeout): nothing is left to commit.
			resp.ErrorCode = errInvalidTxnState
			return resp, nil, false
		}
		if err := s.e.EndTxn(req.ProducerID, req.ProducerEpoch, req.Commit); err != nil {
			s.log.Warn("kafka: EndTxn", "transactional_id", req.TransactionalID, "producer", req.ProducerID, "commit", req.Commit, "err", err)
			resp.ErrorCode = kafkaCode(err)
			return resp, nil, false
		}
		if !req.Commit || len(offsets) == 0 {
			return resp, nil, false
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for _, o := range offsets {
			wg.Add(1)
			s.e.CommitOffset(o.group, o.topic, o.part, o.offset, func(err error) {
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
				wg.Done()
			})
		}
		wg.Wait()
		if first != nil {
			s.log.Warn("kafka: committing a transaction's offsets", "transactional_id", req.TransactionalID, "err", first)
			resp.ErrorCode = kafkaCode(first)
		}
		return resp, nil, false
	})
}
