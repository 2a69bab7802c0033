package disk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// pageSize is the unit of pre-touching and of segment sizes.
var pageSize = os.Getpagesize()

// FS is the file system under a Log: the few calls the log makes, so that tests can fail any
// of them (an fdatasync error, ENOSPC from fallocate). Paths are absolute or relative to the
// process's working directory.
type FS interface {
	// OpenFile opens or creates a file, as os.OpenFile.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Remove unlinks a file.
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// ReadDir lists the names in dir, sorted.
	ReadDir(dir string) ([]string, error)
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string) error
	// SyncDir fsyncs a directory so that entries created, renamed or removed in it are durable.
	SyncDir(dir string) error
}

// File is an open file.
type File interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Close() error
	Name() string
	// Size is the file's current length.
	Size() (int64, error)
	// Truncate sets the file's length (ftruncate). Growing it adds a hole: zeros, no blocks.
	Truncate(size int64) error
	// Allocate reserves the blocks of [off, off+n) on disk (fallocate FALLOC_FL_KEEP_SIZE: the
	// length is unchanged; blocks already there are kept): a later write through a mapping of that
	// range cannot fail for lack of space. A write to a hole can: on a full disk, through a mapping,
	// that is SIGBUS.
	Allocate(off, n int64) error
	// ZeroRange makes [off, off+n) read as zeros and keeps it allocated.
	ZeroRange(off, n int64) error
	// Datasync is fdatasync.
	Datasync() error
	// StartWriteback starts writing back the dirty pages of [off, off+n) and returns without
	// waiting for them (sync_file_range SYNC_FILE_RANGE_WRITE). It makes nothing durable; it only
	// leaves less for the next Datasync.
	StartWriteback(off, n int64) error
	// Map maps the first n bytes MAP_SHARED, readable and writable.
	Map(n int) ([]byte, error)
	// Unmap undoes Map.
	Unmap(b []byte) error
	// NextData returns the first region [start, end) at or after off that may hold data, or ok=false
	// when the file holds only a hole from off on (lseek SEEK_DATA/SEEK_HOLE). Holes read as zeros;
	// reading them through a mapping still costs a zeroed page each, so recovery skips them. A file
	// system that cannot tell reports the whole rest of the file as data.
	NextData(off int64) (start, end int64, ok bool, err error)
}

// AtomicTempSuffix ends the name of the temp file WriteFileAtomic writes beside path (path+".tmp"):
// what a crash before its rename leaves.
const AtomicTempSuffix = tmpSuffix

// WriteFileAtomic replaces the file at path with data through fsys, so that a crash leaves either
// the old file or the new one, whole: it writes path+".tmp" (created afresh with perm: a stale one
// left by a crash is removed first, as it would keep its own mode), fdatasyncs it (its length included),
// renames it over path and fsyncs the directory. On failure the temp file is removed and the error
// (wrapping fsys's, with the step and file named) returned; the directory fsync's error is returned
// too, since a rename that is not durable may be undone by a crash. Topic configs,
// committed-offset snapshots, work-queue states and the users file are all written through it (a
// segment's index file is not: it is a cache Open can rebuild, written without syncs by
// writeIndexFile).
// Concurrent writers of one path must serialize themselves (they share the temp name).
func WriteFileAtomic(fsys FS, path string, data []byte, perm os.FileMode) error {
	tmp := path + AtomicTempSuffix
	_ = fsys.Remove(tmp)
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("disk: creating %s: %w", filepath.Base(tmp), err)
	}
	if _, err = f.WriteAt(data, 0); err != nil {
		err = fmt.Errorf("disk: writing %s: %w", filepath.Base(tmp), err)
	} else if err = f.Datasync(); err != nil {
		err = fmt.Errorf("disk: fdatasync %s: %w", filepath.Base(tmp), err)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("disk: closing %s: %w", filepath.Base(tmp), cerr)
	}
	if err == nil {
		if rerr := fsys.Rename(tmp, path); rerr != nil {
			err = fmt.Errorf("disk: renaming %s: %w", filepath.Base(tmp), rerr)
		}
	}
	if err != nil {
		_ = fsys.Remove(tmp)
		return err
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("disk: fsync %s: %w", filepath.Dir(path), err)
	}
	return nil
}

// OSFS is the operating system's file system (Linux).
type OSFS struct{}

func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OSFS) Remove(name string) error             { return os.Remove(name) }
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (OSFS) MkdirAll(dir string) error            { return os.MkdirAll(dir, 0o755) }

func (OSFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	sort.Strings(names)
	return names, nil
}

func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (f osFile) Allocate(off, n int64) error {
	return ignoringEINTR(func() error { return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, n) })
}

func (f osFile) ZeroRange(off, n int64) error {
	err := ignoringEINTR(func() error {
		return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	})
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	// The file system cannot zero a range in place: write the zeros.
	zero := make([]byte, min(n, 1<<20))
	for n > 0 {
		c := min(n, int64(len(zero)))
		if _, err := f.WriteAt(zero[:c], off); err != nil {
			return err
		}
		off, n = off+c, n-c
	}
	return nil
}

func (f osFile) Datasync() error {
	return ignoringEINTR(func() error { return unix.Fdatasync(int(f.Fd())) })
}

func (f osFile) StartWriteback(off, n int64) error {
	return ignoringEINTR(func() error { return unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE) })
}

func (f osFile) Map(n int) ([]byte, error) {
	return unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func (f osFile) Unmap(b []byte) error { return unix.Munmap(b) }

func (f osFile) NextData(off int64) (start, end int64, ok bool, err error) {
	size, err := f.Size()
	if err != nil || off >= size {
		return 0, 0, false, err
	}
	fd := int(f.Fd())
	start, err = unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		return 0, 0, false, nil // only a hole from off to the end
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
		return off, size, true, nil // no SEEK_DATA here: everything may be data
	case err != nil:
		return 0, 0, false, err
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, false, err
	}
	return start, min(end, size), true, nil
}

func ignoringEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// allocErr classifies a failed fallocate: ENOSPC (and EDQUOT) become ErrNoSpace.
func allocErr(name string, err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: allocating %s: %w", ErrNoSpace, filepath.Base(name), err)
	}
	return fmt.Errorf("disk: allocating %s: %w", filepath.Base(name), err)
}
