package servertest

import (
	"os"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/disk"
)

// GatedFS is the OS file system (engine.Options.FS) with its fdatasyncs held at will: after Hold,
// every File.Datasync waits until Release, so a test can look at what waits for an fsync. The zero
// value is not ready; use NewGatedFS.
type GatedFS struct {
	disk.OSFS
	held    atomic.Bool
	release chan struct{}
	once    sync.Once
}

// NewGatedFS returns a GatedFS that holds nothing yet.
func NewGatedFS() *GatedFS { return &GatedFS{release: make(chan struct{})} }

// Hold makes every Datasync from now on wait for Release.
func (g *GatedFS) Hold() { g.held.Store(true) }

// Release lets the held Datasyncs and every later one through. Later calls do nothing.
func (g *GatedFS) Release() {
	g.once.Do(func() {
		g.held.Store(false)
		close(g.release)
	})
}

// OpenFile opens the file as disk.OSFS does, its Datasync gated.
func (g *GatedFS) OpenFile(name string, flag int, perm os.FileMode) (disk.File, error) {
	f, err := g.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return gatedFile{File: f, fs: g}, nil
}

type gatedFile struct {
	disk.File
	fs *GatedFS
}

func (f gatedFile) Datasync() error {
	if f.fs.held.Load() {
		<-f.fs.release
	}
	return f.File.Datasync()
}
