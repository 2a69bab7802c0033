// Package disk is the partition log: one Log per partition, a directory of mmap'd segment files
// allocated in steps, appended to lock-free by many goroutines, made durable by a group-commit flusher,
// recovered batch by batch on Open, and trimmed by retention. docs/storage.md has the procedures.
//
// # Files
//
// A partition directory holds, per segment:
//
//	00000000000000000000.log    segment: record batches back to back, named by its base offset
//	00000000000000000000.index  sparse index of that segment (see indexfile.go), written once synced
//	spare.log.tmp               the next segment, pre-created before the active one fills
//
// A segment file is SegmentBytes long (ftruncate: a hole) and mapped MAP_SHARED whole; its blocks
// are reserved (fallocate FALLOC_FL_KEEP_SIZE) in steps of AllocStep, ahead of the writer, up to
// A, the segment's allocated word. A claim never ends past A, so a write through the mapping never
// needs a block the file system could fail to find: no SIGBUS, even on a full disk (a write into
// the hole would allocate at the page fault). Reading the hole gives zeros. A is kept in memory
// only: neither the length nor the blocks say where the data ends. Files are never shrunk while
// mapped.
//
//	 0                                   P               A                 SegmentBytes
//	+--------+--------+-----+-----------+----------------+..................+
//	| batch  | batch  | ... | batch     | 0 0 0 ... 0 0  | hole (0 0 0 ...) |
//	+--------+--------+-----+-----------+----------------+..................+
//	                                     ^ a zero batchLength ends the log
//	                                                      ^ allocated (a multiple of the step)
//
// Each batch is a Kafka RecordBatch v2 exactly as the producer sent it (see wire/batch.go for its
// byte diagram) except the 8-byte base offset, which the log patches and the CRC does not cover.
// Batch n+1's base offset is batch n's base offset plus its record count; the first batch's is the
// segment's base offset. These rules are frozen: they are the on-disk format.
//
// # Append: claim, copy, publish
//
// Appends come from several goroutines (network event loops, in-process publishers) and take no
// lock. Each segment has two words, each alone on a cache line:
//
//   - claim packs (position, offset delta) — the next free byte and the next free offset,
//     relative to the segment — into one uint64 (see pack). An appender reserves its bytes and
//     its offsets together with one CAS from (p, d) to (p+n, d+k), provided p+n is within the
//     reserved blocks (the segment's allocated word); past them, the appender first reserves more
//     (one short fallocate, under the segment's allocMu) or fails with ErrNoSpace.
//   - committed has the same packing: everything below it is copied and visible.
//
// An appender then copies its batches into the page cache at p — the one copy on the write path,
// from the caller's buffer (a connection's read buffer) — and patches each batch's base offset:
// an append of pwriteMin bytes or more with pwritev, the offsets patched on the way
// (segment.writeBatches), a smaller one (or one whose pwritev failed) into the mapping, patched in
// place. To publish it waits until committed equals its own starting
// (p, d), which means every appender that claimed before it has published, and stores (p+n, d+k).
// The store is a release and readers load committed with acquire, so a reader that sees the new
// committed word sees the bytes. Publication is therefore in claim order, and committed only moves
// forward over fully written batches: NextOffset and every Read stop at a prefix of whole batches.
// The wait is a brief spin (the appender ahead is mid-copy), then runtime.Gosched so that a
// descheduled appender can finish; as in Aeron, an appender stalled between claim and publish
// holds up those behind it, never corrupts them.
//
// When a claim does not fit, the appender takes the slow path, roll, under Log.mu: it seals the
// segment (CAS the claim to position sealedPos; later CASes fail), waits until committed reaches
// the sealed end, renames the spare file to the next segment's name (or creates one), and stores
// the new segment as active. The new segment starts at (0, 0), so committed offsets stay dense
// across segments, and nothing is claimed in it until the old one is entirely committed. If
// creating the segment fails (ENOSPC) the seal is undone and the error returned; nothing is lost.
//
// The housekeeper goroutine keeps the append path free of page faults and slow work: it reserves
// blocks AllocAheadBytes ahead of the claim (once half of that is left); it faults in pages
// PretouchBytes ahead of the claim, never past the allocated end (madvise MADV_POPULATE_WRITE while
// no fsync waiter asked for a sync in the last second, MADV_POPULATE_READ while they do; else an
// atomic add of zero or a load per page, never a plain write, which could race with an appender);
// it starts writeback of committed pages a step at a time (sync_file_range);
// it pre-creates the spare (its first step) once the active segment is half full, indexes
// committed batches, writes sealed segments' index files, and enforces retention.
//
// # Durability
//
// An Append that returns is in the page cache: it survives a process crash ("written"). The
// flusher goroutine makes it survive a machine crash ("fsync"), on demand: a sync requested by
// RequestSync, WaitSynced or Sync starts at once, and data nobody waits for is synced FlushInterval
// after its first unsynced append or once FlushBytes are unsynced. A round issues one fdatasync per
// segment holding unsynced data (normally one), fsyncs the directory if a segment was created, and
// publishes SyncedOffset and calls OnSync. A failed fdatasync is fatal: the kernel may already
// have marked the pages clean, so retrying could report data durable that is not. The log then
// refuses every append with an error wrapping ErrFailed and the cause.
//
// # Reads and segment lifetimes
//
// Read returns a View: a slice of the mapping holding whole committed batches, zero-copy. Segments
// are reference-counted: the log holds one reference, each View and each flusher use another.
// Retention unlinks a segment's files at once but the mapping goes only when the last reference is
// released, so a reader's View stays valid (the file system keeps the unlinked inode alive).
//
// # Ownership summary
//
// Appenders own their claimed range until they publish. Log.mu serializes roll, retention,
// truncation and Close. The flusher alone writes the synced watermarks; the housekeeper alone
// writes pre-touch marks and the index cursors. Fields say the same at their declarations.
package disk
