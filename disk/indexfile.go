package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Index file layout. Written whole (temp file, then rename: never fsynced, see writeIndexFile) once
// a sealed segment's data is durable, and at Close; never updated in place. Big-endian. Frozen at
// version 2 (version 1 lacked the retention time; Open rebuilds a version 1 file from the log like
// any rejected index).
//
//	 0               4       6       8                              16
//	+---------------+-------+-------+-------------------------------+
//	| magic "SLXI"  |  ver  | esize |  base offset (int64)          |
//	+---------------+-------+-------+-------------------------------+
//	| interval u32  | count u32     | end position u32 | end delta u32 |  16..32
//	+---------------+---------------+------------------+--------------+
//	|  max timestamp (int64)        |  retention time (int64)       |  32..48
//	+-------------------------------+-------------------------------+
//	| crc32c u32    | reserved u32  |                                  48..56
//	+---------------+---------------+
//	| entry 0: delta u32 | position u32 | maxTsBefore int64         |  56, 16 bytes each
//	| entry 1 ...                                                   |
//
// crc32c covers bytes 0..48 and every entry. An entry (delta, position, maxTsBefore) says the batch
// at position has base offset base+delta and every batch before it has max timestamp
// <= maxTsBefore. "end" is where the segment's last batch ends. The max timestamp is the largest
// batch max timestamp (client clocks: for timestamp lookups); the retention time is the largest of
// them each capped at the broker's clock when the batch was indexed (for retention by age; see
// segment.idxRetainTs). The index is a cache: Open rebuilds it from the log whenever it is missing,
// behind, or fails a check.
const (
	indexMagic      = 0x534c5849 // "SLXI"
	indexVersion    = 2
	indexHeaderSize = 56
	indexEntrySize  = 16
	indexCRCAt      = 48 // the checksum's offset; it covers the header before it
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeIndex serializes the segment's index with its end (pos, delta).
func (s *segment) encodeIndex(endPos, endDelta uint32) []byte {
	n := int(s.idxN.Load())
	b := make([]byte, indexHeaderSize+n*indexEntrySize)
	be := binary.BigEndian
	be.PutUint32(b[0:], indexMagic)
	be.PutUint16(b[4:], indexVersion)
	be.PutUint16(b[6:], indexEntrySize)
	be.PutUint64(b[8:], uint64(s.base))
	be.PutUint32(b[16:], s.interval)
	be.PutUint32(b[20:], uint32(n))
	be.PutUint32(b[24:], endPos)
	be.PutUint32(b[28:], endDelta)
	be.PutUint64(b[32:], uint64(s.idxMaxTs))
	be.PutUint64(b[40:], uint64(s.idxRetainTs))
	for i, e := range s.entries[:n] {
		p := b[indexHeaderSize+i*indexEntrySize:]
		be.PutUint32(p[0:], e.delta)
		be.PutUint32(p[4:], e.pos)
		be.PutUint64(p[8:], uint64(e.maxTsBefore))
	}
	be.PutUint32(b[indexCRCAt:], indexCRC(b))
	return b
}

// indexCRC is the checksum of an encoded index b: its header before the checksum, and its entries.
func indexCRC(b []byte) uint32 {
	return crc32.Update(crc32.Checksum(b[:indexCRCAt], castagnoli), castagnoli, b[indexHeaderSize:])
}

// writeIndexFile replaces the segment's index file with its index up to (endPos, endDelta): it
// writes the temp file indexName+".tmp" (truncating a stale one) and renames it over the index,
// so that nobody ever finds a half-written file under the index's name. It makes nothing durable:
// no fdatasync of the file and no fsync of the directory. After a power loss the file may be
// missing, empty, torn or zeros, and Open rebuilds it from the segment (recovery step 3 trusts an
// index only once its framing, checksum, end and the batches after its last entry check against the
// log). Two orderings keep an index that passes those checks from describing anything else than the
// data it was written for: the housekeeper writes it only once the flusher's fdatasync covers the
// segment's end (Log.indexSegments), so a durable index never outlives the data it indexes; and a
// recovery that cuts a segment deletes its index (recovery.step5Cut, made durable by its directory
// fsync), so an old index cannot stand in for one of the data appended after the cut. The two
// syncs it no longer makes took the housekeeper 2-4.6 s of a 6 s closed-loop run, waiting behind
// the data being written back (docs/benchmarks.md, "Index files without fsync").
// Errors wrap fs's, with the step and file named; on failure the temp file is removed.
func writeIndexFile(fs FS, dir string, s *segment, endPos, endDelta uint32) error {
	path := filepath.Join(dir, indexName(s.base))
	tmp := path + tmpSuffix
	f, err := fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("disk: creating %s: %w", filepath.Base(tmp), err)
	}
	if _, err = f.WriteAt(s.encodeIndex(endPos, endDelta), 0); err != nil {
		err = fmt.Errorf("disk: writing %s: %w", filepath.Base(tmp), err)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("disk: closing %s: %w", filepath.Base(tmp), cerr)
	}
	if err == nil {
		if err = fs.Rename(tmp, path); err != nil {
			err = fmt.Errorf("disk: renaming %s: %w", filepath.Base(tmp), err)
		}
	}
	if err != nil {
		_ = fs.Remove(tmp)
	}
	return err
}

// indexHeader is a decoded index file.
type indexFile struct {
	base             int64
	interval         uint32
	endPos, endDelta uint32
	maxTs            int64
	retainTs         int64
	entries          []indexEntry
}

var (
	errIndex        = errors.New("index rejected")
	errIndexVersion = fmt.Errorf("%w: an older version", errIndex) // rebuilt quietly
)

// readIndexFile reads and checks an index file's framing and checksum; the caller checks it
// against the log.
func readIndexFile(fs FS, path string) (indexFile, error) {
	var x indexFile
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return x, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return x, err
	}
	if size < 8 || size > 1<<30 {
		return x, fmt.Errorf("%w: size %d", errIndex, size)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil {
		return x, err
	}
	be := binary.BigEndian
	if be.Uint32(b[0:]) == indexMagic && be.Uint16(b[4:]) < indexVersion {
		return x, errIndexVersion
	}
	if size < indexHeaderSize || (size-indexHeaderSize)%indexEntrySize != 0 {
		return x, fmt.Errorf("%w: size %d", errIndex, size)
	}
	n := int(be.Uint32(b[20:]))
	switch {
	case be.Uint32(b[0:]) != indexMagic || be.Uint16(b[4:]) != indexVersion || be.Uint16(b[6:]) != indexEntrySize:
		return x, fmt.Errorf("%w: bad magic or version", errIndex)
	case indexHeaderSize+n*indexEntrySize != len(b):
		return x, fmt.Errorf("%w: %d entries in %d bytes", errIndex, n, len(b))
	case indexCRC(b) != be.Uint32(b[indexCRCAt:]):
		return x, fmt.Errorf("%w: checksum mismatch", errIndex)
	}
	x.base = int64(be.Uint64(b[8:]))
	x.interval = be.Uint32(b[16:])
	x.endPos, x.endDelta = be.Uint32(b[24:]), be.Uint32(b[28:])
	x.maxTs = int64(be.Uint64(b[32:]))
	x.retainTs = int64(be.Uint64(b[40:]))
	x.entries = make([]indexEntry, n)
	for i := range x.entries {
		p := b[indexHeaderSize+i*indexEntrySize:]
		x.entries[i] = indexEntry{delta: be.Uint32(p[0:]), pos: be.Uint32(p[4:]), maxTsBefore: int64(be.Uint64(p[8:]))}
	}
	return x, nil
}
