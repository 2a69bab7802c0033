package disk

import "errors"

// Errors returned by the log. Each is a package-prefixed sentinel; call sites wrap them with
// context and %w, so callers test with errors.Is.
var (
	// ErrOffsetOutOfRange: the offset is below the log's start or above its end.
	ErrOffsetOutOfRange = errors.New("disk: offset out of range")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("disk: log closed")
	// ErrFailed: an fdatasync failed. The pages it covered may have been marked clean without
	// reaching the disk, so the log refuses every further write. It is never retried.
	ErrFailed = errors.New("disk: log failed")
	// ErrNoSpace: creating or extending a segment failed for lack of space (it wraps ENOSPC).
	// Nothing already written is affected; appends succeed again once space returns.
	ErrNoSpace = errors.New("disk: no space")
	// ErrCorrupt: stored bytes failed validation on a read path (a damaged index file, a batch
	// that does not parse where one must be). Recovery repairs what it can and reports it.
	ErrCorrupt = errors.New("disk: corrupt data")
	// ErrInvalidBatch: Append was given bytes that are not whole record batches.
	ErrInvalidBatch = errors.New("disk: invalid batch")
	// ErrTooLarge: one Append call larger than a segment or a batch above MaxBatchBytes.
	ErrTooLarge = errors.New("disk: append too large")
	// ErrInvalidOptions: Options.Validate rejected the options.
	ErrInvalidOptions = errors.New("disk: invalid options")
)
