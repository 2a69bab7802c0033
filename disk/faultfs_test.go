package disk

import (
	"os"
	"sync/atomic"
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
