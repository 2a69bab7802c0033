package disk

import (
	"os"
	"path/filepath"
)

// WriteFileAtomic replaces path with data through fs, so that a crash leaves either the old file or
// the new one, whole: write a temp file beside it (path + ".tmp", created afresh with perm), fdatasync it,
// rename it over path, fsync the directory. The temp file is removed on failure; no Sync error is
// ignored. Concurrent writers of one path must serialize themselves (they share the temp name).
func WriteFileAtomic(fs FS, path string, data []byte, perm os.FileMode) error {
	tmp := path + tmpSuffix
	_ = fs.Remove(tmp) // a stale one left by a crash would keep its own mode: perm applies on creation only
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Datasync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, path)
	}
	if err != nil {
		_ = fs.Remove(tmp)
		return err
	}
	return fs.SyncDir(filepath.Dir(path))
}
