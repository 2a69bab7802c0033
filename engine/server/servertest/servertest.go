// Package servertest holds helpers for tests that run a Sluice server, in
// this module's packages and in programs that embed one.
package servertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server"
)

// Logger discards logs, or writes them at debug level to stderr when the
// environment sets SLUICE_TEST_LOG.
func Logger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Start runs an engine in a fresh temporary directory (memory topics under
// it, 4 MiB segments) and a server for it on a loopback port with 2 event
// loops, both logging to Logger. setEngine and setServer, if not nil,
// adjust the options first. Both are closed when the test ends.
func Start(t testing.TB, setEngine func(*engine.Options), setServer func(*server.Options)) (*server.Server, *engine.Engine) {
	t.Helper()
	dir := t.TempDir()
	log := Logger()
	eo := engine.Options{DataDir: dir, MemoryDir: filepath.Join(dir, "mem"), SegmentBytes: 4 << 20, Logger: log}
	if setEngine != nil {
		setEngine(&eo)
	}
	eng, err := engine.Open(eo)
	if err != nil {
		t.Fatal(err)
	}
	so := server.Options{Addr: "127.0.0.1:0", Engine: eng, Loops: 2, Logger: log}
	if setServer != nil {
		setServer(&so)
	}
	srv, err := server.Start(so)
	if err != nil {
		eng.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
		if err := eng.Close(); err != nil {
			t.Errorf("engine close: %v", err)
		}
	})
	return srv, eng
}

// SelfSigned makes a certificate for 127.0.0.1, valid from an hour ago to
// an hour from now, and a pool that trusts it: the server's
// tls.Config.Certificates and the client's RootCAs.
func SelfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}
