package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// The transaction log, DataDir/offsets/txn.log (docs/storage.md): commit decisions, appended and
// fsynced before any COMMIT marker is written. Each record:
//
//	length u32 | crc u32 (CRC-32C of the payload) | payload
//	payload: producerId i64 | epoch i16 | count u32 | { topicLen u16 | topic | partition i32 | bound i64 }*
//
// bound is the partition's next offset when the decision was taken: the transaction's batches there
// lie below it, and a later transaction of the same producer lies above it. A torn or corrupt tail
// (a crash mid-write) ends the log; that record's commit never happened. The log is emptied at Open
// after recovery and whenever no commit is between its record and its durable markers.

// txnPart names a partition in a decision.
type txnPart struct {
	topic string
	part  int32
}

// txnDecision is one commit record.
type txnDecision struct {
	pid    int64
	epoch  int16
	bounds map[txnPart]int64
}

// txnLog is the open transaction log file.
type txnLog struct {
	mu       sync.Mutex
	f        *os.File // guarded by mu
	size     int64    // guarded by mu
	inflight int      // commits whose record is written and markers not yet durable; guarded by mu
}

// txnLogTruncateBytes is the size past which an idle transaction log is emptied.
const txnLogTruncateBytes = 1 << 20

var txnCRC = crc32.MakeTable(crc32.Castagnoli)

// openTxnLog opens (creating) dir/txn.log and returns the latest decision per producer in it.
func openTxnLog(dir string) (*txnLog, map[int64]txnDecision, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("engine: txn log: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "txn.log"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("engine: txn log: %w", err)
	}
	raw, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("engine: txn log: %w", err)
	}
	decided := map[int64]txnDecision{}
	valid := 0 // bytes of whole records: a torn tail after them is overwritten
	for rest := raw; len(rest) >= 8; {
		n := int(binary.BigEndian.Uint32(rest))
		if n > len(rest)-8 || crc32.Checksum(rest[8:8+n], txnCRC) != binary.BigEndian.Uint32(rest[4:]) {
			break // a torn tail
		}
		d, err := decodeTxnDecision(rest[8 : 8+n])
		if err != nil {
			break
		}
		decided[d.pid] = d
		rest = rest[8+n:]
		valid += 8 + n
	}
	return &txnLog{f: f, size: int64(valid)}, decided, nil
}

func decodeTxnDecision(b []byte) (txnDecision, error) {
	bad := errors.New("engine: txn log: short record")
	if len(b) < 14 {
		return txnDecision{}, bad
	}
	be := binary.BigEndian
	d := txnDecision{pid: int64(be.Uint64(b)), epoch: int16(be.Uint16(b[8:])), bounds: map[txnPart]int64{}}
	n := int(be.Uint32(b[10:]))
	b = b[14:]
	for range n {
		if len(b) < 2 {
			return d, bad
		}
		tl := int(be.Uint16(b))
		if len(b) < 2+tl+12 {
			return d, bad
		}
		tp := txnPart{topic: string(b[2 : 2+tl]), part: int32(be.Uint32(b[2+tl:]))}
		d.bounds[tp] = int64(be.Uint64(b[6+tl:]))
		b = b[14+tl:]
	}
	return d, nil
}

// write appends d and fsyncs it; on success the commit counts as in flight until done.
func (l *txnLog) write(d txnDecision) error {
	be := binary.BigEndian
	p := be.AppendUint64(nil, uint64(d.pid))
	p = be.AppendUint16(p, uint16(d.epoch))
	p = be.AppendUint32(p, uint32(len(d.bounds)))
	for tp, bound := range d.bounds {
		p = be.AppendUint16(p, uint16(len(tp.topic)))
		p = append(p, tp.topic...)
		p = be.AppendUint32(p, uint32(tp.part))
		p = be.AppendUint64(p, uint64(bound))
	}
	rec := be.AppendUint32(nil, uint32(len(p)))
	rec = be.AppendUint32(rec, crc32.Checksum(p, txnCRC))
	rec = append(rec, p...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.WriteAt(rec, l.size); err != nil {
		return fmt.Errorf("engine: txn log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("engine: txn log: %w", err)
	}
	l.size += int64(len(rec))
	l.inflight++
	return nil
}

// done ends a commit's stay in the log: its markers are durable. An idle log past
// txnLogTruncateBytes is emptied.
func (l *txnLog) done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if l.inflight == 0 && l.size > txnLogTruncateBytes {
		_ = l.truncateLocked() // on failure the records stay valid: tried again at the next commit
	}
}

// truncate empties the log (every decision in it is complete).
func (l *txnLog) truncate() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.truncateLocked()
}

func (l *txnLog) truncateLocked() error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("engine: txn log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("engine: txn log: %w", err)
	}
	l.size = 0
	return nil
}

func (l *txnLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
