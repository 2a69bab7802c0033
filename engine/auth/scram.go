package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// The SCRAM server (RFC 5802, RFC 7677 for SHA-256; SHA-512 as Kafka runs it). Two steps:
//
//	client-first  n,,n=<user>,r=<client nonce>          ->  r=<client nonce><server nonce>,s=<salt>,i=<iterations>
//	client-final  c=biws,r=<nonce>,p=<proof>           ->  v=<server signature>          (done)
//
// librdkafka's client-final nonce is its client nonce followed by the whole server-first nonce;
// that form is accepted too (Kafka checks only that the nonce ends with the server-first's).
// The gs2 header is "n,," or "y,," (no channel binding; "y" says the client could bind but believes
// the server cannot, which is so), optionally naming as authzid the user itself ("n,a=<user>,",
// which franz-go sends when asked): channel binding ("p=") and acting for another identity are
// refused. A user that does not exist gets a mock server-first (a stable salt, the default
// iterations, see Users.mockKey) and fails at the proof exactly as a wrong password does, so the
// exchange does not tell who exists. A failed proof answers "e=invalid-proof" with ErrFailed; a
// message that does not parse answers "e=invalid-encoding" (or nothing, for the client-first) with
// ErrMalformed. Once a conversation has finished or failed every further Step fails (a replayed
// client-final included): a new exchange needs a new conversation and gets a new nonce.

const (
	// maxSCRAMMessage bounds a client message, in bytes; RFC 5802's messages are a few hundred.
	maxSCRAMMessage = 4096
	// serverNonceLen is the random bytes in the server's part of the nonce (base64-encoded).
	serverNonceLen = 24
)

// SCRAM server-final errors (RFC 5802 section 7, server-error-value).
const (
	scramInvalidEncoding = "e=invalid-encoding"
	scramBindingMismatch = "e=channel-bindings-dont-match"
	scramInvalidProof    = "e=invalid-proof"
	scramOtherError      = "e=other-error"
)

type scramState uint8

const (
	scramWantFirst scramState = iota
	scramWantFinal
	scramOver // finished or failed: no further step
)

// scramConv is one server-side SCRAM exchange. Owned by the goroutine that runs it (one connection).
type scramConv struct {
	u     *Users
	mech  string
	h     func() hash.Hash
	state scramState

	user            string     // unescaped, from client-first
	cred            Credential // the user's verifier, or a mock one when !known
	known           bool
	gs2Header       string // as sent: what "c=" must encode
	clientFirstBare string
	serverFirst     string
	clientNonce     string // from client-first
	nonce           string // client nonce + server nonce
	principal       string // set when the proof verified
	// serverNonce, when set (tests: RFC 7677's example), replaces the random server nonce.
	serverNonce string
}

// startSCRAM begins a SCRAM exchange with mechanism (MechSCRAM256 or MechSCRAM512).
func (u *Users) startSCRAM(mechanism string) (Conversation, error) {
	h := scramHash(mechanism)
	if h == nil {
		return nil, fmt.Errorf("%w %q", ErrMechanism, mechanism)
	}
	return &scramConv{u: u, mech: mechanism, h: h}, nil
}

func (c *scramConv) Principal() string { return c.principal }

// Step takes the client-first, then the client-final message. See the comment above for answers.
func (c *scramConv) Step(in []byte) ([]byte, bool, error) {
	state := c.state
	c.state = scramOver // a failure ends the conversation; success moves on below
	if len(in) > maxSCRAMMessage {
		return nil, false, fmt.Errorf("%w: SCRAM message of %d bytes", ErrMalformed, len(in))
	}
	switch state {
	case scramWantFirst:
		out, err := c.first(string(in))
		if err != nil {
			return nil, false, err
		}
		c.state = scramWantFinal
		return out, false, nil
	case scramWantFinal:
		return c.final(string(in))
	}
	return nil, false, fmt.Errorf("%w: the SCRAM exchange is over", ErrMalformed)
}

// first reads client-first and answers server-first.
func (c *scramConv) first(msg string) ([]byte, error) {
	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return nil, fmt.Errorf("%w: SCRAM client-first without a gs2 header", ErrMalformed)
	}
	switch {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return nil, fmt.Errorf("%w: SCRAM channel binding is not supported", ErrFailed)
	default:
		return nil, fmt.Errorf("%w: SCRAM gs2 flag %q", ErrMalformed, flag)
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, fmt.Errorf("%w: SCRAM client-first without a gs2 header", ErrMalformed)
	}
	c.gs2Header = msg[:len(msg)-len(bare)]
	c.clientFirstBare = bare
	// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, fmt.Errorf("%w: SCRAM client-first wants n=user,r=nonce", ErrMalformed)
	}
	user, err := unescapeSASLName(attrs[0][2:])
	if err != nil {
		return nil, err
	}
	cnonce := attrs[1][2:]
	if err := checkNonce(cnonce); err != nil {
		return nil, err
	}
	for _, ext := range attrs[2:] {
		k, _, _ := strings.Cut(ext, "=")
		if k == "tokenauth" { // KIP-48 delegation tokens: not offered
			return nil, fmt.Errorf("%w: SCRAM delegation tokens are not supported", ErrFailed)
		}
		if len(k) == 0 {
			return nil, fmt.Errorf("%w: SCRAM extension %q", ErrMalformed, ext)
		}
	}
	if authzid != "" {
		if !strings.HasPrefix(authzid, "a=") {
			return nil, fmt.Errorf("%w: SCRAM authzid %q", ErrMalformed, authzid)
		}
		z, err := unescapeSASLName(authzid[2:])
		if err != nil {
			return nil, err
		}
		if z != user {
			return nil, fmt.Errorf("%w: acting as another principal is not offered", ErrFailed)
		}
	}
	c.user = user
	c.cred, c.known = c.u.credential(c.mech, user)
	snonce := c.serverNonce
	if snonce == "" {
		b := make([]byte, serverNonceLen)
		_, _ = rand.Read(b) // crypto/rand.Read never fails
		snonce = base64.RawStdEncoding.EncodeToString(b)
	}
	c.clientNonce = cnonce
	c.nonce = cnonce + snonce
	c.serverFirst = "r=" + c.nonce + ",s=" + base64.StdEncoding.EncodeToString(c.cred.Salt) +
		",i=" + strconv.Itoa(c.cred.Iterations)
	return []byte(c.serverFirst), nil
}

// final reads client-final, verifies the proof and answers server-final.
func (c *scramConv) final(msg string) ([]byte, bool, error) {
	// client-final-message = channel-binding "," nonce ["," extensions] "," proof
	i := strings.LastIndex(msg, ",p=")
	if i < 0 || !strings.HasPrefix(msg, "c=") {
		return []byte(scramInvalidEncoding), false, fmt.Errorf("%w: SCRAM client-final wants c=...,r=...,p=proof", ErrMalformed)
	}
	withoutProof, proof64 := msg[:i], msg[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[1], "r=") {
		return []byte(scramInvalidEncoding), false, fmt.Errorf("%w: SCRAM client-final wants c=...,r=...,p=proof", ErrMalformed)
	}
	cbind, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil {
		return []byte(scramInvalidEncoding), false, fmt.Errorf("%w: SCRAM channel binding is not base64", ErrMalformed)
	}
	proof, err := base64.StdEncoding.DecodeString(proof64)
	if err != nil || len(proof) != c.h().Size() {
		return []byte(scramInvalidEncoding), false, fmt.Errorf("%w: SCRAM proof is not %d bytes of base64", ErrMalformed, c.h().Size())
	}
	if string(cbind) != c.gs2Header {
		return []byte(scramBindingMismatch), false, fmt.Errorf("%w: SCRAM channel binding does not match the gs2 header", ErrFailed)
	}
	// The nonce is server-first's, or (librdkafka: kcat, confluent-kafka) the client nonce again
	// followed by server-first's, which Kafka accepts; the proof covers the message as sent.
	rnonce := attrs[1][2:]
	if len(rnonce) == len(c.clientNonce)+len(c.nonce) && rnonce[:len(c.clientNonce)] == c.clientNonce {
		rnonce = rnonce[len(c.clientNonce):]
	}
	if subtle.ConstantTimeCompare([]byte(rnonce), []byte(c.nonce)) != 1 {
		return []byte(scramOtherError), false, fmt.Errorf("%w: SCRAM nonce mismatch", ErrFailed)
	}
	authMessage := c.clientFirstBare + "," + c.serverFirst + "," + withoutProof
	// ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof holds when H(ClientKey)
	// is StoredKey. Compared in constant time, and a mock verifier fails the same way.
	clientKey := hmacSum(c.h, c.cred.StoredKey, authMessage)
	subtle.XORBytes(clientKey, clientKey, proof)
	sum := c.h()
	sum.Write(clientKey)
	match := subtle.ConstantTimeCompare(sum.Sum(nil), c.cred.StoredKey) == 1
	if !match || !c.known {
		return []byte(scramInvalidProof), false, ErrFailed
	}
	c.principal = c.user
	sig := hmac.New(c.h, c.cred.ServerKey)
	sig.Write([]byte(authMessage))
	return []byte("v=" + base64.StdEncoding.EncodeToString(sig.Sum(nil))), true, nil
}

// unescapeSASLName decodes RFC 5802's saslname: "=2C" is ',', "=3D" is '='; any other '=' is
// malformed, as is an empty or non-UTF-8 name (checked as a user name).
func unescapeSASLName(s string) (string, error) {
	if strings.IndexByte(s, '=') >= 0 {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if s[i] != '=' {
				b.WriteByte(s[i])
				continue
			}
			switch {
			case strings.HasPrefix(s[i:], "=2C"):
				b.WriteByte(',')
			case strings.HasPrefix(s[i:], "=3D"):
				b.WriteByte('=')
			default:
				return "", fmt.Errorf("%w: SCRAM name %q has a bad escape", ErrMalformed, s)
			}
			i += 2
		}
		s = b.String()
	}
	if err := CheckUserName(s); err != nil {
		return "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, nil
}

// checkNonce checks a client nonce: printable ASCII except ',' (RFC 5802), not empty.
func checkNonce(n string) error {
	if n == "" {
		return fmt.Errorf("%w: empty SCRAM nonce", ErrMalformed)
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 0x21 || n[i] > 0x7e || n[i] == ',' {
			return fmt.Errorf("%w: SCRAM nonce holds byte 0x%02x", ErrMalformed, n[i])
		}
	}
	return nil
}
