package disk

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// faultFS is the OS file system with injectable failures: fdatasync errors, fallocate errors
// (ENOSPC for a full disk) and directory fsync errors. Set the errors at any time from the test
// goroutine.
type faultFS struct {
	OSFS
	syncErr    atomic.Pointer[error]
	allocErr   atomic.Pointer[error]
	syncDirErr atomic.Pointer[error]
	syncs      atomic.Int64 // fdatasync calls that reached the OS
	segSyncs   atomic.Int64 // those of segment files (*.log, *.log.tmp), not index files
	idxSyncs   atomic.Int64 // those of index files (*.index, *.index.tmp)
	dirSyncs   atomic.Int64 // directory fsyncs that reached the OS
	writeback  atomic.Int64 // bytes passed to StartWriteback
	// writebackNice is the lowest nice value (the highest priority) of a thread that called
	// StartWriteback; 100 before the first call (set by the test).
	writebackNice atomic.Int64
	// syncDelay makes each fdatasync of a segment file take this much longer (nanoseconds).
	syncDelay atomic.Int64
	// renameHook, if set, runs before each Rename; an error it returns fails the rename.
	renameHook atomic.Pointer[func(oldname, newname string) error]
}

func (fs *faultFS) Rename(oldname, newname string) error {
	if h := fs.renameHook.Load(); h != nil {
		if err := (*h)(oldname, newname); err != nil {
			return err
		}
	}
	return fs.OSFS.Rename(oldname, newname)
}

func (fs *faultFS) setSyncErr(err error)    { fs.syncErr.Store(&err) }
func (fs *faultFS) setAllocErr(err error)   { fs.allocErr.Store(&err) }
func (fs *faultFS) setSyncDirErr(err error) { fs.syncDirErr.Store(&err) }

func (fs *faultFS) SyncDir(dir string) error {
	if p := fs.syncDirErr.Load(); p != nil && *p != nil {
		return *p
	}
	fs.dirSyncs.Add(1)
	return fs.OSFS.SyncDir(dir)
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs}, nil
}

type faultFile struct {
	File
	fs *faultFS
}

func (f *faultFile) Datasync() error {
	if p := f.fs.syncErr.Load(); p != nil && *p != nil {
		return *p
	}
	f.fs.syncs.Add(1)
	switch n := strings.TrimSuffix(f.Name(), tmpSuffix); {
	case strings.HasSuffix(n, logSuffix):
		f.fs.segSyncs.Add(1)
		if d := f.fs.syncDelay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
	case strings.HasSuffix(n, indexSuffix):
		f.fs.idxSyncs.Add(1)
	}
	return f.File.Datasync()
}

func (f *faultFile) StartWriteback(off, n int64) error {
	for nice := int64(threadNice()); ; {
		cur := f.fs.writebackNice.Load()
		if nice >= cur || f.fs.writebackNice.CompareAndSwap(cur, nice) {
			break
		}
	}
	f.fs.writeback.Add(n)
	return f.File.StartWriteback(off, n)
}

func (f *faultFile) Allocate(off, n int64) error {
	if p := f.fs.allocErr.Load(); p != nil && *p != nil {
		return *p
	}
	return f.File.Allocate(off, n)
}

// quotaFS is the OS file system with a disk of capacity bytes shared by every log opened on it:
// an fallocate that would take the blocks allocated to its files past it fails with ENOSPC, as a
// full file system's does, and reserves nothing. It counts allocated blocks (st_blocks), not
// lengths; this package allocates each file from its start, so the blocks an fallocate adds are
// its end minus the blocks the file holds. Removing or truncating a file frees its blocks.
type quotaFS struct {
	OSFS
	capacity int64
	mu       sync.Mutex
	used     int64 // guarded by mu
}

// blocks is the number of bytes allocated to the file at path (0 if it does not exist).
func blocks(path string) int64 {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

func (fs *quotaFS) Used() int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.used
}

func (fs *quotaFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	before := blocks(name)
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fs.used += blocks(name) - before // O_TRUNC frees
	return &quotaFile{File: f, fs: fs}, nil
}

func (fs *quotaFS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	before := blocks(name)
	if err := fs.OSFS.Remove(name); err != nil {
		return err
	}
	fs.used -= before // a file still open keeps its blocks until closed; close enough here
	return nil
}

type quotaFile struct {
	File
	fs *quotaFS
}

// blocks is the number of bytes allocated to the open file (fstat: renames do not matter).
func (f *quotaFile) blocks() int64 {
	var st syscall.Stat_t
	if syscall.Fstat(int(f.File.(interface{ Fd() uintptr }).Fd()), &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

func (f *quotaFile) Allocate(off, n int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	before := f.blocks()
	if f.fs.used+max(0, off+n-before) > f.fs.capacity {
		return unix.ENOSPC
	}
	err := f.File.Allocate(off, n)
	f.fs.used += f.blocks() - before
	return err
}

func (f *quotaFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	before := f.blocks()
	err := f.File.Truncate(size)
	f.fs.used += f.blocks() - before
	return err
}

// threadNice is the nice value of the calling thread (getpriority(2) on the thread id: the raw
// system call returns 20 - nice).
func threadNice() int {
	p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		return -100
	}
	return 20 - p
}
