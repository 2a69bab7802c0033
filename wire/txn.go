package wire

import (
	"encoding/binary"
	"fmt"
)

// Transactions (docs/protocol.md, "Transactions"). A transactional batch is an ordinary produced
// batch with attribute bit 4 set and a producer id: the broker stores it at once, and consumers
// reading committed data see it only after its transaction commits. EndTxn commits or aborts
// everything a producer id wrote since its last EndTxn; the broker then appends a control batch
// (attribute bits 4 and 5, one record whose key is Kafka's EndTxnMarker key: version int16 0, type
// int16 ABORT=0 or COMMIT=1) to every partition the transaction touched, as Kafka does.

const (
	// AttrTransactional is attribute bit 4: the batch belongs to a transaction of its producer id.
	AttrTransactional int16 = 1 << 4
	// AttrControl is attribute bit 5: the batch is a control batch (a transaction marker).
	AttrControl int16 = 1 << 5
)

// Control record types, Kafka's ControlRecordType.
const (
	ControlAbort  int16 = 0
	ControlCommit int16 = 1
)

// IsTransactional reports whether the batch header has the transactional bit.
func (h *BatchHeader) IsTransactional() bool { return h.Attributes&AttrTransactional != 0 }

// IsControl reports whether the batch header has the control bit.
func (h *BatchHeader) IsControl() bool { return h.Attributes&AttrControl != 0 }

// MarkTransactional sets the transactional bit of the batch at the front of b (built with a
// producer id) and recomputes its CRC. b must hold the whole batch.
func MarkTransactional(b []byte) {
	a := binary.BigEndian.Uint16(b[offAttributes:])
	binary.BigEndian.PutUint16(b[offAttributes:], a|uint16(AttrTransactional))
	binary.BigEndian.PutUint32(b[offCRC:], BatchCRC(b))
}

// AppendControlBatch appends a control batch ending producer id/epoch's transaction (commit or
// abort) to dst, base offset 0, timestamp ts (ms): one record with key version 0 | type, and a
// value of version 0 | coordinator epoch 0, Kafka's EndTxnMarker.
func AppendControlBatch(dst []byte, producerID int64, epoch int16, commit bool, ts int64) []byte {
	typ := ControlAbort
	if commit {
		typ = ControlCommit
	}
	key := []byte{0, 0, byte(uint16(typ) >> 8), byte(typ)}
	value := []byte{0, 0, 0, 0, 0, 0}
	b := NewBatchBuilder(128)
	b.SetProducer(producerID, epoch, -1)
	b.Append(key, value, nil, ts)
	out, _ := b.Build() // uncompressed: cannot fail
	binary.BigEndian.PutUint16(out[offAttributes:], uint16(AttrTransactional|AttrControl))
	binary.BigEndian.PutUint32(out[offCRC:], BatchCRC(out))
	return append(dst, out...)
}

// ControlType returns the control record type (ControlAbort, ControlCommit) of the control batch at
// the front of b, validated and uncompressed.
func ControlType(b []byte) (int16, error) {
	var it RecordIter
	if _, err := it.Reset(b); err != nil {
		return 0, err
	}
	var r Record
	if !it.Next(&r) || len(r.Key) < 4 {
		return 0, fmt.Errorf("%w: control batch without a control record key", ErrCorrupt)
	}
	return int16(binary.BigEndian.Uint16(r.Key[2:])), nil
}

// EndTxn ends producer ProducerID's open transaction at Epoch: Commit 1 makes its batches visible to
// read-committed consumers, 0 aborts them.
//
//	producerId i64 | epoch i16 | commit u8
type EndTxn struct {
	ProducerID int64
	Epoch      int16
	Commit     bool
}

func (m *EndTxn) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.ProducerID))
	dst = binary.BigEndian.AppendUint16(dst, uint16(m.Epoch))
	c := byte(0)
	if m.Commit {
		c = 1
	}
	return append(dst, c)
}

func (m *EndTxn) Decode(b []byte) error {
	r := reader{b: b}
	m.ProducerID, m.Epoch = r.i64(), int16(r.u16())
	c := r.u8()
	if err := r.end(); err != nil {
		return err
	}
	if c > 1 || m.ProducerID < 0 {
		return fmt.Errorf("%w: end-txn producer %d commit %d", ErrMalformed, m.ProducerID, c)
	}
	m.Commit = c == 1
	return nil
}
