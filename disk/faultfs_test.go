package disk

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// faultFS is the OS file system with injectable failures: fdatasync errors and fallocate errors
// (ENOSPC for a full disk). Set the errors at any time from the test goroutine.
type faultFS struct {
	OSFS
	syncErr  atomic.Pointer[error]
	allocErr atomic.Pointer[error]
	syncs    atomic.Int64 // fdatasync calls that reached the OS
}

func (fs *faultFS) setSyncErr(err error)  { fs.syncErr.Store(&err) }
func (fs *faultFS) setAllocErr(err error) { fs.allocErr.Store(&err) }

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
	return f.File.Datasync()
}

func (f *faultFile) Allocate(off, n int64) error {
	if p := f.fs.allocErr.Load(); p != nil && *p != nil {
		return *p
	}
	return f.File.Allocate(off, n)
}

// quotaFS is the OS file system with a disk of capacity bytes shared by every log opened on it:
// fallocate that would grow the files' total length past it fails with ENOSPC, as a full file
// system's does, and leaves the file as it was. The total counts file lengths (what this package's
// files allocate: fallocate mode 0 extends the length); removing a file frees its length.
type quotaFS struct {
	OSFS
	capacity int64
	mu       sync.Mutex
	used     int64 // guarded by mu
}

func (fs *quotaFS) Used() int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.used
}

func (fs *quotaFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	var freed int64
	if flag&os.O_TRUNC != 0 {
		if st, err := os.Stat(name); err == nil {
			freed = st.Size()
		}
	}
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fs.mu.Lock()
	fs.used -= freed
	fs.mu.Unlock()
	return &quotaFile{File: f, fs: fs}, nil
}

func (fs *quotaFS) Remove(name string) error {
	st, err := os.Stat(name)
	if err := fs.OSFS.Remove(name); err != nil {
		return err
	}
	if err == nil && st.Mode().IsRegular() {
		fs.mu.Lock()
		fs.used -= st.Size()
		fs.mu.Unlock()
	}
	return nil
}

type quotaFile struct {
	File
	fs *quotaFS
}

func (f *quotaFile) Allocate(off, n int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	size, err := f.Size()
	if err != nil {
		return err
	}
	grow := max(0, off+n-size)
	if f.fs.used+grow > f.fs.capacity {
		return unix.ENOSPC
	}
	if err := f.File.Allocate(off, n); err != nil {
		return err
	}
	f.fs.used += grow
	return nil
}
