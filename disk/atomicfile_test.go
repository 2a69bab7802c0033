package disk

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFileAtomic: the file is replaced whole with the given mode (a stale temp file with
// another mode does not leak its mode), no temp file is left, and a failed fdatasync leaves the old
// content in place, removes the temp file and is returned.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path+tmpSuffix, []byte("stale"), 0o666); err != nil {
		t.Fatal(err)
	}
	var fs faultFS
	if err := WriteFileAtomic(&fs, path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("content %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	if _, err := os.Stat(path + tmpSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left: %v", err)
	}
	boom := errors.New("fdatasync failed")
	fs.setSyncErr(boom)
	if err := WriteFileAtomic(&fs, path, []byte("two"), 0o600); !errors.Is(err, boom) {
		t.Fatalf("failed sync: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("content %q after a failed write, want the old one", b)
	}
	if _, err := os.Stat(path + tmpSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left after a failure: %v", err)
	}
}
