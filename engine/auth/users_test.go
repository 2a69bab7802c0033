package auth

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestUsersFile adds, replaces, lists and deletes users in a file: it is created 0600, holds no
// password, leaves no temp file, and what LoadUsers reads back authenticates.
func TestUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if replaced, err := AddUser(path, "alice", "secret", 0); err != nil || replaced {
		t.Fatalf("add alice: %v replaced=%v", err, replaced)
	}
	if _, err := AddUser(path, "bob", "hunter2", 8192); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "secret") || strings.Contains(string(data), "hunter2") {
		t.Fatalf("the file holds a password:\n%s", data)
	}
	if !strings.Contains(string(data), "SCRAM-SHA-256$4096:") || !strings.Contains(string(data), "SCRAM-SHA-512$8192:") {
		t.Errorf("file:\n%s", data)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file left: %v", err)
	}
	names, err := ListUsers(path)
	if err != nil || !slices.Equal(names, []string{"alice", "bob"}) {
		t.Fatalf("list %v %v", names, err)
	}
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if !u.verifyPassword("alice", []byte("secret")) || u.verifyPassword("alice", []byte("hunter2")) {
		t.Error("alice's password")
	}
	if got := u.Mechanisms("bob"); !slices.Equal(got, []string{MechSCRAM256, MechSCRAM512}) {
		t.Errorf("bob's mechanisms %v", got)
	}

	// Replacing a password: the old one stops working.
	if replaced, err := AddUser(path, "alice", "new", 0); err != nil || !replaced {
		t.Fatalf("replace alice: %v replaced=%v", err, replaced)
	}
	u, _ = LoadUsers(path)
	if u.verifyPassword("alice", []byte("secret")) || !u.verifyPassword("alice", []byte("new")) {
		t.Error("alice's replaced password")
	}

	if err := DeleteUser(path, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteUser(path, "alice"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("delete twice: %v", err)
	}
	if names, _ := ListUsers(path); !slices.Equal(names, []string{"bob"}) {
		t.Errorf("after delete: %v", names)
	}
	if err := DeleteUser(filepath.Join(t.TempDir(), "none"), "bob"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("delete from a missing file: %v", err)
	}
}

// TestUsersFileRefused: bad names, iteration counts and files LoadUsers must refuse.
func TestUsersFileRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	for _, name := range []string{"", "a b", "tab\tx", "#x", strings.Repeat("x", 256), "nul\x00", "\xff"} {
		if _, err := AddUser(path, name, "pw", 0); !errors.Is(err, ErrUserName) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	for _, it := range []int{1, 4095, MaxIterations + 1} {
		if _, err := AddUser(path, "alice", "pw", it); !errors.Is(err, ErrIterations) {
			t.Errorf("iterations %d: %v", it, err)
		}
	}
	if _, err := AddUser(path, "alice", "pw", 0); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o620, 0o602, 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadUsers(path); !errors.Is(err, ErrUsersFile) {
			t.Errorf("mode %v: %v", mode, err)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadUsers(path); err != nil || !ReadableByOthers(path) {
		t.Errorf("mode 0644: %v (readable by others: %v)", err, ReadableByOthers(path))
	}

	good := "alice SCRAM-SHA-256$4096:c2FsdA==$" + strings.Repeat("A", 43) + "=:" + strings.Repeat("A", 43) + "="
	if _, err := ParseUsers(strings.NewReader("# comment\n\n" + good + "\n")); err != nil {
		t.Fatalf("good line: %v", err)
	}
	for _, text := range []string{
		"alice",
		good + "\n" + good,
		"alice SCRAM-SHA-1$4096:c2FsdA==$AAAA:AAAA",
		strings.Replace(good, "$4096:", "$100:", 1),
		strings.Replace(good, "$4096:", "$x:", 1),
		strings.Replace(good, "c2FsdA==", "!!", 1),
		strings.Replace(good, "c2FsdA==", "", 1),
		strings.Replace(good, strings.Repeat("A", 43)+"=:", "AAAA:", 1),
		strings.Replace(good, "$", ":", 1),
		good + " " + good[len("alice "):],
	} {
		if _, err := ParseUsers(strings.NewReader(text)); !errors.Is(err, ErrUsersFile) {
			t.Errorf("%q: %v", text, err)
		}
	}
}

// TestUsersFileConcurrentAdds: AddUser calls on one file from many goroutines (as concurrent
// `sluice user add` runs) lose none of the users, thanks to the lock around read-modify-write.
func TestUsersFileConcurrentAdds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	var wg sync.WaitGroup
	want := []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"}
	for _, n := range want {
		wg.Go(func() {
			if _, err := AddUser(path, n, "pw-"+n, 0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	names, err := ListUsers(path)
	if err != nil || !slices.Equal(names, want) {
		t.Fatalf("users %v (%v), want %v", names, err, want)
	}
}
