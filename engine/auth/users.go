package auth

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/disk"
)

// The users file: one user per line, its SCRAM verifiers in the form of RFC 5803 (as PostgreSQL
// stores them), never the password. Blank lines and lines starting with '#' are ignored.
//
//	name SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> SCRAM-SHA-512$<iterations>:<salt>$<StoredKey>:<ServerKey>
//
// salt, StoredKey and ServerKey are standard base64 with padding. For a mechanism with hash H and
// password P (RFC 5802): SaltedPassword = PBKDF2-HMAC-H(P, salt, iterations), ClientKey =
// HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey), ServerKey = HMAC(SaltedPassword,
// "Server Key"). Both keys are as long as H's output (32 and 64 bytes). A line may carry either
// verifier or both; AddUser writes both. Names are 1 to MaxUserName bytes of UTF-8 with no white
// space or control character, not starting with '#'. The file must not be writable by group or
// others (LoadUsers refuses it); AddUser creates it with mode 0600.

const (
	// DefaultIterations is the PBKDF2 iteration count AddUser uses by default: Kafka's and RFC
	// 7677's 4096.
	DefaultIterations = 4096
	// MinIterations is the least iteration count accepted, from a file or for a new user.
	MinIterations = 4096
	// MaxIterations bounds the iteration count, as Kafka does (16384). A SCRAM exchange costs the
	// broker a few HMACs whatever the count (the client derives the key), but PLAIN against a user
	// costs one PBKDF2 of this many iterations, about 1 ms at 4096 and 4 ms at 16384 on SHA-256: a
	// face runs that step off its event loop (the native face parks the frame meanwhile).
	MaxIterations = 16384
	// MaxUserName is the longest user name, in bytes.
	MaxUserName = 255
	// saltLen is the length of a salt AddUser draws, in bytes.
	saltLen = 24
)

var (
	// ErrUsersFile is returned by LoadUsers and ParseUsers for a users file that does not parse or
	// whose mode is unsafe; the message names the line.
	ErrUsersFile = errors.New("auth: bad users file")
	// ErrUserName is returned for a user name outside the rules above.
	ErrUserName = errors.New("auth: invalid user name")
	// ErrUnknownUser is returned by DeleteUser for a name the file does not hold.
	ErrUnknownUser = errors.New("auth: unknown user")
	// ErrIterations is returned for an iteration count outside [MinIterations, MaxIterations].
	ErrIterations = errors.New("auth: iteration count out of range")
)

// Credential is one SCRAM verifier of one user: what the broker needs to check a proof and prove
// itself, and not enough to log in with elsewhere than on a SCRAM exchange. Immutable once built.
type Credential struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte // H(ClientKey), len = H's size
	ServerKey  []byte // HMAC(SaltedPassword, "Server Key"), len = H's size
}

// scramHash returns the hash of a SCRAM mechanism, or nil for another name.
func scramHash(mechanism string) func() hash.Hash {
	switch mechanism {
	case MechSCRAM256:
		return sha256.New
	case MechSCRAM512:
		return sha512.New
	}
	return nil
}

// scramMechs are the SCRAM mechanisms, in the order a users file line lists them.
var scramMechs = [...]string{MechSCRAM256, MechSCRAM512}

// NewCredential derives mechanism's verifier of password with a fresh random salt and iterations
// (0 for DefaultIterations). It returns ErrMechanism for a mechanism other than SCRAM-SHA-256/512
// and ErrIterations for a count out of range.
func NewCredential(mechanism, password string, iterations int) (Credential, error) {
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails
	return deriveCredential(mechanism, password, salt, iterations)
}

// deriveCredential is NewCredential with a given salt.
func deriveCredential(mechanism, password string, salt []byte, iterations int) (Credential, error) {
	h := scramHash(mechanism)
	if h == nil {
		return Credential{}, fmt.Errorf("%w %q", ErrMechanism, mechanism)
	}
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < MinIterations || iterations > MaxIterations {
		return Credential{}, fmt.Errorf("%w: %d, want %d to %d", ErrIterations, iterations, MinIterations, MaxIterations)
	}
	salted, err := saltedPassword(h, []byte(password), salt, iterations)
	if err != nil {
		return Credential{}, err
	}
	stored, server := keys(h, salted)
	return Credential{Salt: salt, Iterations: iterations, StoredKey: stored, ServerKey: server}, nil
}

// saltedPassword is RFC 5802's Hi(password, salt, i): PBKDF2 with HMAC-H, one block of H's size.
func saltedPassword(h func() hash.Hash, password, salt []byte, iterations int) ([]byte, error) {
	return pbkdf2.Key(h, string(password), salt, iterations, h().Size())
}

// keys derives StoredKey and ServerKey from a salted password.
func keys(h func() hash.Hash, salted []byte) (stored, server []byte) {
	clientKey := hmacSum(h, salted, "Client Key")
	sum := h()
	sum.Write(clientKey)
	return sum.Sum(nil), hmacSum(h, salted, "Server Key")
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// Users is the store of user credentials: for each user name, salted and iterated SCRAM verifiers
// (RFC 5802's StoredKey and ServerKey), never the password. A nil *Users holds nobody. Read-only
// once loaded: conversations on any goroutine read it without locks.
type Users struct {
	users map[string]map[string]Credential // name -> mechanism -> verifier
	// mockKey derives the salts and keys of users that do not exist (mock), so that a SCRAM exchange
	// for an unknown name looks like one for a known name with a wrong password: a salt that is the
	// same on every attempt, the default iteration count, and a proof that fails. It is a hash of
	// every ServerKey in the store (secret, and stable while the file is), or random for an empty
	// store.
	mockKey []byte
}

// Len reports how many users the store holds; 0 for nil.
func (u *Users) Len() int {
	if u == nil {
		return 0
	}
	return len(u.users)
}

// Names returns the user names, sorted.
func (u *Users) Names() []string {
	if u == nil {
		return nil
	}
	names := make([]string, 0, len(u.users))
	for n := range u.users {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Mechanisms returns the SCRAM mechanisms name has a verifier for, in file order; nil for an
// unknown name.
func (u *Users) Mechanisms(name string) []string {
	if u == nil {
		return nil
	}
	var ms []string
	for _, m := range scramMechs {
		if _, ok := u.users[name][m]; ok {
			ms = append(ms, m)
		}
	}
	return ms
}

// credential returns name's verifier for mechanism and whether it exists; for one that does not,
// a mock verifier (see mockKey) that no proof matches in practice.
func (u *Users) credential(mechanism, name string) (Credential, bool) {
	if u != nil {
		if c, ok := u.users[name][mechanism]; ok {
			return c, true
		}
	}
	var key []byte
	if u != nil {
		key = u.mockKey
	}
	h := scramHash(mechanism)
	mock := func(label string) []byte {
		m := hmac.New(h, key)
		m.Write([]byte(label))
		m.Write([]byte{0})
		m.Write([]byte(mechanism))
		m.Write([]byte{0})
		m.Write([]byte(name))
		return m.Sum(nil)
	}
	return Credential{Salt: mock("salt")[:saltLen], Iterations: DefaultIterations,
		StoredKey: mock("stored"), ServerKey: mock("server")}, false
}

// verifyPassword reports whether pass is user's password (PLAIN against the users): it derives the
// salted password with the user's SCRAM-SHA-256 verifier (else SCRAM-SHA-512's) and compares
// StoredKey in constant time. An unknown user costs the same derivation, against a mock verifier.
func (u *Users) verifyPassword(user string, pass []byte) bool {
	mech := MechSCRAM256
	if u != nil {
		if _, ok := u.users[user][MechSCRAM256]; !ok {
			if _, ok := u.users[user][MechSCRAM512]; ok {
				mech = MechSCRAM512
			}
		}
	}
	c, known := u.credential(mech, user)
	h := scramHash(mech)
	salted, err := saltedPassword(h, pass, c.Salt, c.Iterations)
	if err != nil {
		return false
	}
	stored, _ := keys(h, salted)
	match := subtle.ConstantTimeCompare(stored, c.StoredKey) == 1
	return known && match
}

// CheckUserName returns an error wrapping ErrUserName when name is not a valid user name.
func CheckUserName(name string) error {
	switch {
	case name == "" || len(name) > MaxUserName:
		return fmt.Errorf("%w: %q must be 1 to %d bytes", ErrUserName, name, MaxUserName)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not UTF-8", ErrUserName, name)
	case name[0] == '#':
		return fmt.Errorf("%w: %q starts with '#'", ErrUserName, name)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: %q holds white space or a control character", ErrUserName, name)
		}
	}
	return nil
}

// ParseUsers reads a users file's content (format above). Errors wrap ErrUsersFile and name the
// line; a name listed twice is an error.
func ParseUsers(r io.Reader) (*Users, error) {
	u := &Users{users: map[string]map[string]Credential{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		fields := strings.Fields(text)
		name := fields[0]
		if err := CheckUserName(name); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrUsersFile, line, err)
		}
		if _, dup := u.users[name]; dup {
			return nil, fmt.Errorf("%w: line %d: user %q listed twice", ErrUsersFile, line, name)
		}
		if len(fields) == 1 {
			return nil, fmt.Errorf("%w: line %d: user %q has no verifier", ErrUsersFile, line, name)
		}
		creds := map[string]Credential{}
		for _, f := range fields[1:] {
			mech, c, err := parseVerifier(f)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrUsersFile, line, err)
			}
			if _, dup := creds[mech]; dup {
				return nil, fmt.Errorf("%w: line %d: two %s verifiers", ErrUsersFile, line, mech)
			}
			creds[mech] = c
		}
		u.users[name] = creds
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	u.setMockKey()
	return u, nil
}

// setMockKey derives mockKey from every ServerKey (in name order), or draws it for an empty store.
func (u *Users) setMockKey() {
	if len(u.users) == 0 {
		u.mockKey = make([]byte, 32)
		_, _ = rand.Read(u.mockKey)
		return
	}
	m := sha256.New()
	m.Write([]byte("sluice scram mock"))
	for _, n := range u.Names() {
		for _, mech := range scramMechs {
			if c, ok := u.users[n][mech]; ok {
				m.Write(c.ServerKey)
			}
		}
	}
	u.mockKey = m.Sum(nil)
}

// parseVerifier reads "MECH$iter:salt$stored:server".
func parseVerifier(f string) (string, Credential, error) {
	parts := strings.Split(f, "$")
	if len(parts) != 3 {
		return "", Credential{}, fmt.Errorf("verifier %.40q: want MECHANISM$ITERATIONS:SALT$STOREDKEY:SERVERKEY", f)
	}
	mech := parts[0]
	h := scramHash(mech)
	if h == nil {
		return "", Credential{}, fmt.Errorf("%w %q", ErrMechanism, mech)
	}
	is, ss, ok1 := strings.Cut(parts[1], ":")
	sk, vk, ok2 := strings.Cut(parts[2], ":")
	if !ok1 || !ok2 {
		return "", Credential{}, fmt.Errorf("%s verifier: want ITERATIONS:SALT$STOREDKEY:SERVERKEY", mech)
	}
	iter, err := strconv.Atoi(is)
	if err != nil || iter < MinIterations || iter > MaxIterations {
		return "", Credential{}, fmt.Errorf("%s verifier: %w: %q, want %d to %d", mech, ErrIterations, is, MinIterations, MaxIterations)
	}
	var c Credential
	c.Iterations = iter
	dec := base64.StdEncoding
	if c.Salt, err = dec.DecodeString(ss); err != nil || len(c.Salt) == 0 {
		return "", Credential{}, fmt.Errorf("%s verifier: bad salt", mech)
	}
	size := h().Size()
	if c.StoredKey, err = dec.DecodeString(sk); err != nil || len(c.StoredKey) != size {
		return "", Credential{}, fmt.Errorf("%s verifier: bad StoredKey (want %d bytes of base64)", mech, size)
	}
	if c.ServerKey, err = dec.DecodeString(vk); err != nil || len(c.ServerKey) != size {
		return "", Credential{}, fmt.Errorf("%s verifier: bad ServerKey (want %d bytes of base64)", mech, size)
	}
	return mech, c, nil
}

// Marshal encodes the store as a users file, users in name order.
func (u *Users) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString("# sluice users: name SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey SCRAM-SHA-512$...\n")
	enc := base64.StdEncoding
	for _, n := range u.Names() {
		b.WriteString(n)
		for _, mech := range scramMechs {
			c, ok := u.users[n][mech]
			if !ok {
				continue
			}
			fmt.Fprintf(&b, " %s$%d:%s$%s:%s", mech, c.Iterations, enc.EncodeToString(c.Salt),
				enc.EncodeToString(c.StoredKey), enc.EncodeToString(c.ServerKey))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// LoadUsers reads the users file at path. It refuses (ErrUsersFile) a file that group or others
// may write, since whoever writes it chooses every password; a file others may read is accepted
// (the verifiers do not give the passwords away, but they do let a reader who also captures an
// exchange impersonate the user, so keep it 0600: see ReadableByOthers).
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v: group or others may write it (chmod go-w)", ErrUsersFile, path, fi.Mode().Perm())
	}
	u, err := ParseUsers(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return u, nil
}

// ReadableByOthers reports whether group or others may read the file at path (a caller warns).
func ReadableByOthers(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o044 != 0
}

// AddUser sets name's password in the users file at path, creating the file (mode 0600) when it
// does not exist: a fresh SCRAM-SHA-256 and SCRAM-SHA-512 verifier, each with its own random salt
// and iterations (0 for DefaultIterations). replaced reports that name was there and its old
// verifiers are gone. The file is rewritten atomically under an exclusive lock (path + ".lock"),
// so concurrent AddUser/DeleteUser calls on one file do not lose each other's change.
func AddUser(path, name, password string, iterations int) (replaced bool, err error) {
	if err := CheckUserName(name); err != nil {
		return false, err
	}
	creds := map[string]Credential{}
	for _, mech := range scramMechs {
		c, err := NewCredential(mech, password, iterations)
		if err != nil {
			return false, err
		}
		creds[mech] = c
	}
	err = rewrite(path, true, func(u *Users) error {
		_, replaced = u.users[name]
		u.users[name] = creds
		return nil
	})
	return replaced, err
}

// DeleteUser removes name from the users file at path; ErrUnknownUser when it is not there.
func DeleteUser(path, name string) error {
	return rewrite(path, false, func(u *Users) error {
		if _, ok := u.users[name]; !ok {
			return fmt.Errorf("%w %q", ErrUnknownUser, name)
		}
		delete(u.users, name)
		return nil
	})
}

// ListUsers returns the names in the users file at path, sorted.
func ListUsers(path string) ([]string, error) {
	u, err := LoadUsers(path)
	if err != nil {
		return nil, err
	}
	return u.Names(), nil
}

// rewrite loads the file at path (an empty store when create and it does not exist), applies
// change, and writes the result back atomically (disk.WriteFileAtomic, mode 0600), all under an
// exclusive flock of path + ".lock".
func rewrite(path string, create bool, change func(*Users) error) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("auth: lock users file: %w", err)
	}
	defer lock.Close()
	for {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("auth: lock users file: %w", err)
	}
	u, err := LoadUsers(path)
	switch {
	case err == nil:
	case create && errors.Is(err, os.ErrNotExist):
		u = &Users{users: map[string]map[string]Credential{}}
	default:
		return err
	}
	if err := change(u); err != nil {
		return err
	}
	if err := disk.WriteFileAtomic(disk.OSFS{}, filepath.Clean(path), u.Marshal(), 0o600); err != nil {
		return fmt.Errorf("auth: write users file: %w", err)
	}
	return nil
}
