package engine

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// Committed offsets on disk, in <DataDir>/offsets/:
//
//	offsets.json  the snapshot: a JSON array of {group, topic, partition, offset, time}, time the
//	              commit's Unix milliseconds (absent in files written before it existed). Replaced
//	              whole by compaction: temp file, fsync, rename, directory fsync.
//	offsets.log   the changes since the snapshot, appended one write and one fdatasync per commit
//	              batch (group commit), as records:
//
//	 0          4          8     9          17         25     29     31        31+g   33+g
//	+----------+----------+-----+----------+----------+------+------+---------+------+-------+
//	| len u32  | crc u32  | op  | time i64 | offset   | part | glen | group   | tlen | topic |
//	|          | (CRC-32C |  u8 | unix ms  | i64      | i32  | u16  | glen B  | u16  | tlen B|
//	|          | of body) |     |          |          |      |      |         |      |       |
//	+----------+----------+-----+----------+----------+------+------+---------+------+-------+
//	            <------------------------------ body: len bytes ------------------------------>
//
// All integers big-endian. op 1 sets (group, topic, part) to offset at time; op 2 deletes every
// offset of group; op 3 deletes every offset of topic (the unused fields are zero or empty). The
// layout is frozen: a file written by one version is read by the next.
//
// Recovery reads the snapshot, then applies the log's records in order up to the first that is
// short, fails its CRC or does not decode: a torn tail from a crash mid-append, never acknowledged.
// The file is truncated there (and fdatasynced) before anything is appended. Compaction writes a
// snapshot of the state after the last record appended, then truncates the log to zero: a crash
// between the two leaves a log whose replay over the new snapshot changes nothing, since every
// record sets or deletes absolute values that the snapshot already reflects.
const (
	offsetsSnapshot = "offsets.json"
	offsetsLog      = "offsets.log"

	opSetOffset   = 1
	opDeleteGroup = 2
	opDeleteTopic = 3

	offsetRecHeader = 8                         // len, crc
	offsetRecFixed  = 1 + 8 + 8 + 4 + 2 + 2     // op, time, offset, partition, two name lengths
	maxOffsetRecord = offsetRecFixed + 2*0xFFFF // a body never exceeds this

	// compactMinBytes: the log is compacted once it exceeds both this and compactFactor times the
	// size of the last snapshot, so that compaction's cost (a snapshot of every live offset) is
	// spread over at least as many bytes of commits as it writes.
	compactMinBytes = 1 << 20
	compactFactor   = 2
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// OffsetKey names one committed offset.
type OffsetKey struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

type offsetRecord struct {
	OffsetKey
	Offset int64 `json:"offset"`
	Time   int64 `json:"time,omitempty"` // unix ms of the commit
}

// offsetEntry is one committed offset and when it was committed (unix ms).
type offsetEntry struct {
	offset int64
	at     int64
}

// offsetStore keeps consumer groups' committed offsets durable. Commits update the map at once,
// append a record to a pending buffer, and are acknowledged when the writer goroutine has appended
// that buffer to the log and fdatasynced it: one write and one fdatasync per burst of commits,
// whatever the number of groups. The writer compacts the log into a new snapshot when it outgrows
// the snapshot (see the layout above).
type offsetStore struct {
	dir string
	fs  disk.FS // writes the snapshot (Options.FS, so tests can fail it)
	log *slog.Logger
	// now stamps commits. Set once before the first commit (newGroupTable), then read-only.
	now func() time.Time

	mu      sync.Mutex // guards everything below
	m       map[OffsetKey]offsetEntry
	pending []byte // encoded records not yet handed to the writer
	seq     uint64 // bumped by every change
	waiters []offsetWaiter
	failed  error // a write failure: the store accepts no more commits
	closing bool

	// Owned by the writer goroutine (and by open, before it starts).
	f        *os.File // offsets.log, opened for appending
	logBytes int64    // its length
	snapSize int64    // the length of the last snapshot written or read
	// compactMin is compactMinBytes; tests lower it.
	compactMin atomic.Int64

	kick chan struct{} // 1-buffered: a change is waiting to be written
	done chan struct{} // closed when the writer has exited
}

type offsetWaiter struct {
	seq  uint64
	done func(error)
}

// splitWaiters returns the waiters whose write is done (seq at most written, or all of them when
// failed) and keeps the rest in place in ws. The caller holds the store's lock and calls the
// returned waiters' done after releasing it. Shared by the offset store and the queue state store.
func splitWaiters(ws []offsetWaiter, written uint64, failed bool) (ready, keep []offsetWaiter) {
	keep = ws[:0]
	for _, w := range ws {
		if w.seq <= written || failed {
			ready = append(ready, w)
		} else {
			keep = append(keep, w)
		}
	}
	clear(ws[len(keep):]) // drop the moved waiters' callbacks from the backing array
	return ready, keep
}

// openOffsetStore reads dir's snapshot and log (truncating a torn tail) and starts the writer; its
// snapshots are written through fsys. now is the engine's clock: it stamps commits, and records
// stored without a commit time get its reading.
func openOffsetStore(dir string, fsys disk.FS, log *slog.Logger, now func() time.Time) (*offsetStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: offsets: %w", err)
	}
	s := &offsetStore{dir: dir, fs: fsys, log: log, now: now, m: map[OffsetKey]offsetEntry{},
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	loadedAt := now().UnixMilli()
	raw, err := os.ReadFile(filepath.Join(dir, offsetsSnapshot))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("engine: offsets: %w", err)
	default:
		var recs []offsetRecord
		if err := json.Unmarshal(raw, &recs); err != nil {
			return nil, fmt.Errorf("engine: offsets: %s: %w", offsetsSnapshot, err)
		}
		for _, r := range recs {
			if r.Time == 0 {
				r.Time = loadedAt // written before commit times were kept: the retention starts now
			}
			s.m[r.OffsetKey] = offsetEntry{offset: r.Offset, at: r.Time}
		}
		s.snapSize = int64(len(raw))
	}
	if err := s.replayLog(); err != nil {
		return nil, err
	}
	s.compactMin.Store(compactMinBytes)
	go s.writer()
	return s, nil
}

// replayLog applies offsets.log to the map, truncates it after its last whole record, and leaves
// it open for appending.
func (s *offsetStore) replayLog() error {
	path := filepath.Join(s.dir, offsetsLog)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("engine: offsets: %w", err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var good int64
	var hdr [offsetRecHeader]byte
	body := make([]byte, 0, 256)
	reason := ""
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err != io.EOF {
				reason = "short record header"
			}
			break
		}
		n := binary.BigEndian.Uint32(hdr[0:4])
		if n < offsetRecFixed || n > maxOffsetRecord {
			reason = fmt.Sprintf("record length %d", n)
			break
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			reason = "short record"
			break
		}
		if crc32.Checksum(body, crc32c) != binary.BigEndian.Uint32(hdr[4:8]) {
			reason = "record checksum mismatch"
			break
		}
		if err := s.applyRecord(body); err != nil {
			reason = err.Error()
			break
		}
		good += offsetRecHeader + int64(n)
	}
	if reason != "" {
		s.log.Warn("offsets log: dropping a torn tail", "at", good, "reason", reason)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return fmt.Errorf("engine: offsets: truncating %s: %w", offsetsLog, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("engine: offsets: fsync %s: %w", offsetsLog, err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("engine: offsets: %w", err)
	}
	s.f, s.logBytes = f, good
	return nil
}

// applyRecord decodes one record body and applies it to the map.
func (s *offsetStore) applyRecord(b []byte) error {
	op := b[0]
	at := int64(binary.BigEndian.Uint64(b[1:9]))
	off := int64(binary.BigEndian.Uint64(b[9:17]))
	part := int32(binary.BigEndian.Uint32(b[17:21]))
	rest := b[21:]
	gl := int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+gl+2 {
		return errors.New("record group overruns it")
	}
	group := string(rest[2 : 2+gl])
	rest = rest[2+gl:]
	tl := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+tl {
		return errors.New("record topic does not end it")
	}
	topic := string(rest[2:])
	switch op {
	case opSetOffset:
		s.m[OffsetKey{Group: group, Topic: topic, Partition: part}] = offsetEntry{offset: off, at: at}
	case opDeleteGroup:
		s.deleteLocked(func(k OffsetKey) bool { return k.Group == group })
	case opDeleteTopic:
		s.deleteLocked(func(k OffsetKey) bool { return k.Topic == topic })
	default:
		return fmt.Errorf("record op %d", op)
	}
	return nil
}

// appendRecordLocked encodes one record onto s.pending. Names longer than 64 KiB cannot be stored
// (topic names are at most 249 bytes; group names are bounded by the frame size): they fail.
func (s *offsetStore) appendRecordLocked(op byte, at, offset int64, group, topic string, part int32) error {
	if len(group) > 0xFFFF || len(topic) > 0xFFFF {
		return fmt.Errorf("engine: offsets: name longer than %d bytes", 0xFFFF)
	}
	n := offsetRecFixed + len(group) + len(topic)
	start := len(s.pending)
	s.pending = binary.BigEndian.AppendUint32(s.pending, uint32(n))
	s.pending = append(s.pending, 0, 0, 0, 0, op)
	s.pending = binary.BigEndian.AppendUint64(s.pending, uint64(at))
	s.pending = binary.BigEndian.AppendUint64(s.pending, uint64(offset))
	s.pending = binary.BigEndian.AppendUint32(s.pending, uint32(part))
	s.pending = binary.BigEndian.AppendUint16(s.pending, uint16(len(group)))
	s.pending = append(s.pending, group...)
	s.pending = binary.BigEndian.AppendUint16(s.pending, uint16(len(topic)))
	s.pending = append(s.pending, topic...)
	body := s.pending[start+offsetRecHeader:]
	binary.BigEndian.PutUint32(s.pending[start+4:], crc32.Checksum(body, crc32c))
	return nil
}

// errOffsetsClosed refuses a commit after Close.
var errOffsetsClosed = errors.New("engine: offsets: closed")

// Commit sets key's offset and calls done once it is durable.
func (s *offsetStore) Commit(key OffsetKey, offset int64, done func(error)) {
	s.commitLive(key, offset, nil, done)
}

// commitLive is Commit for a topic that may be deleted meanwhile: gone, if not nil, is asked under the
// store's lock, and a commit for a gone topic is refused with CodeUnknownTopic. DeleteTopic marks the
// topic gone before it takes the lock to drop the topic's offsets, so no commit can slip in after.
func (s *offsetStore) commitLive(key OffsetKey, offset int64, gone func() bool, done func(error)) {
	at := s.now().UnixMilli()
	s.mu.Lock()
	if gone != nil && gone() {
		s.mu.Unlock()
		done(&wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: "topic " + key.Topic + " was deleted"})
		return
	}
	if err := s.failed; err != nil || s.closing {
		s.mu.Unlock()
		if err == nil {
			err = errOffsetsClosed
		}
		done(err)
		return
	}
	if err := s.appendRecordLocked(opSetOffset, at, offset, key.Group, key.Topic, key.Partition); err != nil {
		s.mu.Unlock()
		done(err)
		return
	}
	s.m[key] = offsetEntry{offset: offset, at: at}
	s.seq++
	s.waiters = append(s.waiters, offsetWaiter{seq: s.seq, done: done})
	s.mu.Unlock()
	s.wake()
}

func (s *offsetStore) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Get returns key's committed offset.
func (s *offsetStore) Get(group, topic string, partition int32) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[OffsetKey{Group: group, Topic: topic, Partition: partition}]
	return e.offset, ok
}

// HasGroup reports whether group has any committed offset.
func (s *offsetStore) HasGroup(group string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if k.Group == group {
			return true
		}
	}
	return false
}

// deleteLocked removes the keys drop selects and reports whether it removed any.
func (s *offsetStore) deleteLocked(drop func(OffsetKey) bool) bool {
	changed := false
	for k := range s.m {
		if drop(k) {
			delete(s.m, k)
			changed = true
		}
	}
	return changed
}

// DeleteTopic forgets every committed offset of topic, so a topic created later under the same name
// does not inherit them. It is written with the next batch.
func (s *offsetStore) DeleteTopic(topic string) {
	s.mu.Lock()
	changed := s.deleteLocked(func(k OffsetKey) bool { return k.Topic == topic }) && !s.closing && s.failed == nil
	if changed && s.appendRecordLocked(opDeleteTopic, 0, 0, "", topic, 0) == nil {
		s.seq++
	}
	s.mu.Unlock()
	if changed {
		s.wake()
	}
}

// DeleteGroups forgets every committed offset of the named groups and calls done (if not nil) once
// that is durable. It returns the names that had offsets.
func (s *offsetStore) DeleteGroups(groups []string, done func(error)) []string {
	s.mu.Lock()
	if err := s.failed; err != nil || s.closing {
		s.mu.Unlock()
		if err == nil {
			err = errOffsetsClosed
		}
		if done != nil {
			done(err)
		}
		return nil
	}
	var gone []string
	for _, g := range groups {
		if !s.deleteLocked(func(k OffsetKey) bool { return k.Group == g }) {
			continue
		}
		if err := s.appendRecordLocked(opDeleteGroup, 0, 0, g, "", 0); err != nil {
			continue // unreachable: the name was stored, so it fits
		}
		gone = append(gone, g)
	}
	s.seq++
	if done != nil {
		s.waiters = append(s.waiters, offsetWaiter{seq: s.seq, done: done})
	}
	s.mu.Unlock()
	s.wake()
	return gone
}

// GroupsCommittedBefore names the groups whose newest commit is older than cutoff (unix ms), sorted.
func (s *offsetStore) GroupsCommittedBefore(cutoff int64) []string {
	newest := map[string]int64{}
	s.mu.Lock()
	for k, e := range s.m {
		if e.at > newest[k.Group] || newest[k.Group] == 0 {
			newest[k.Group] = e.at
		}
	}
	s.mu.Unlock()
	var out []string
	for g, at := range newest {
		if at < cutoff {
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out
}

// Keys lists every stored key, sorted.
func (s *offsetStore) Keys() []OffsetKey {
	s.mu.Lock()
	keys := make([]OffsetKey, 0, len(s.m))
	for k := range s.m {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	return keys
}

// writer appends pending records to the log, fdatasyncs, acknowledges the commits they hold, and
// compacts the log when it has outgrown the snapshot (or the store is closing).
func (s *offsetStore) writer() {
	defer close(s.done)
	defer s.f.Close()
	var buf []byte
	for range s.kick {
		s.mu.Lock()
		seq := s.seq
		buf, s.pending = s.pending, buf[:0]
		closing := s.closing
		grown := s.logBytes + int64(len(buf))
		var snap []offsetRecord
		if grown > 0 && (closing || grown >= max(s.compactMin.Load(), compactFactor*s.snapSize)) {
			// The state after buf, taken with buf: the log up to buf is then the whole history
			// of the snapshot, which is what makes a crash before the truncation harmless.
			snap = s.snapshotLocked()
		}
		s.mu.Unlock()

		var err error
		if len(buf) > 0 {
			if _, err = s.f.Write(buf); err == nil {
				err = s.f.Sync()
			}
			if err != nil {
				err = fmt.Errorf("engine: offsets: appending to %s: %w", offsetsLog, err)
			}
			s.logBytes += int64(len(buf))
		}
		s.settle(seq, err)
		if err == nil && snap != nil {
			if err := s.compact(snap); err != nil {
				s.settle(0, err)
			}
		}
		if closing {
			return
		}
	}
}

// snapshotLocked copies the map as snapshot records, sorted. The caller holds s.mu.
func (s *offsetStore) snapshotLocked() []offsetRecord {
	recs := make([]offsetRecord, 0, len(s.m))
	for k, e := range s.m {
		recs = append(recs, offsetRecord{OffsetKey: k, Offset: e.offset, Time: e.at})
	}
	return recs
}

// settle calls the waiters whose changes the write up to seq made durable (all of them on err) and
// records err as the store's failure.
func (s *offsetStore) settle(seq uint64, err error) {
	if err != nil {
		s.log.Error("committed offsets could not be written; commits are refused from now on", "err", err)
	}
	s.mu.Lock()
	ready, keep := splitWaiters(s.waiters, seq, err != nil)
	s.waiters = keep
	if err != nil && s.failed == nil {
		s.failed = err
	}
	s.mu.Unlock()
	for _, w := range ready {
		w.done(err)
	}
}

// compact writes recs (the state after the last record appended) as the snapshot and empties the
// log. Records committed meanwhile wait in s.pending and go to the emptied log. Writer only.
func (s *offsetStore) compact(recs []offsetRecord) error {
	sort.Slice(recs, func(i, j int) bool { return recs[i].OffsetKey.less(recs[j].OffsetKey) })
	data := mustJSON(recs)
	if err := disk.WriteFileAtomic(s.fs, filepath.Join(s.dir, offsetsSnapshot), data, 0o644); err != nil {
		return fmt.Errorf("engine: offsets: snapshot: %w", err)
	}
	if err := s.f.Truncate(0); err != nil {
		return fmt.Errorf("engine: offsets: truncating %s: %w", offsetsLog, err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("engine: offsets: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("engine: offsets: fsync %s: %w", offsetsLog, err)
	}
	s.logBytes, s.snapSize = 0, int64(len(data))
	return nil
}

func (k OffsetKey) less(o OffsetKey) bool {
	if k.Group != o.Group {
		return k.Group < o.Group
	}
	if k.Topic != o.Topic {
		return k.Topic < o.Topic
	}
	return k.Partition < o.Partition
}

// Close writes what is pending, compacts the log into a snapshot and stops the writer.
func (s *offsetStore) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	s.wake()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}
