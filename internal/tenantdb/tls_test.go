package tenantdb

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert, key, pool}
}

// leaf issues a server certificate with the given Common Name and DNS
// subjectAltNames.
func (ca *testCA) leaf(t *testing.T, cn string, dns ...string) (tls.Certificate, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der
}

// TestVerifyFullAsLibpq: a certificate naming its host only in the Common
// Name passes verify-full, as with libpq; subjectAltNames, when present,
// are the only names; an untrusted chain or another host fails.
func TestVerifyFullAsLibpq(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	_, cnOnly := ca.leaf(t, "db.tenant.example")
	_, withSAN := ca.leaf(t, "db.tenant.example", "other.example")
	_, wildcard := ca.leaf(t, "*.tenant.example")
	for _, c := range []struct {
		name string
		der  []byte
		pool *x509.CertPool
		host string
		ok   bool
	}{
		{"CN only, matching", cnOnly, ca.pool, "db.tenant.example", true},
		{"CN only, case", cnOnly, ca.pool, "DB.Tenant.Example", true},
		{"CN only, other host", cnOnly, ca.pool, "db2.tenant.example", false},
		{"SAN present: CN ignored", withSAN, ca.pool, "db.tenant.example", false},
		{"SAN present: SAN matches", withSAN, ca.pool, "other.example", true},
		{"wildcard CN, one label", wildcard, ca.pool, "db.tenant.example", true},
		{"wildcard CN, two labels", wildcard, ca.pool, "a.db.tenant.example", false},
		{"untrusted chain", cnOnly, other.pool, "db.tenant.example", false},
	} {
		err := verifyFull([][]byte{c.der}, c.pool, c.host)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// TestLibpqTLSOnlyChangesVerifyFull: the other sslmodes keep pgx's
// libpq-like behaviour; verify-full gets the Common Name fallback, and a
// real TLS handshake with a CN-only certificate succeeds through it.
func TestLibpqTLSOnlyChangesVerifyFull(t *testing.T) {
	for _, mode := range []string{"require", "prefer", "verify-ca"} {
		cfg, err := pgx.ParseConfig("postgres://u@db.tenant.example/x?sslmode=" + mode)
		if err != nil {
			t.Fatal(err)
		}
		before := cfg.TLSConfig.VerifyPeerCertificate != nil
		libpqTLS(cfg)
		if (cfg.TLSConfig.VerifyPeerCertificate != nil) != before {
			t.Errorf("sslmode=%s changed", mode)
		}
	}
	ca := newCA(t)
	cert, _ := ca.leaf(t, "db.tenant.example")
	cfg, err := pgx.ParseConfig("postgres://u@db.tenant.example/x?sslmode=verify-full")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig.RootCAs = ca.pool
	// Without the fallback crypto/tls refuses the CN-only certificate.
	if err := handshake(t, cert, cfg.TLSConfig.Clone()); err == nil {
		t.Fatal("crypto/tls accepted a CN-only certificate: the fallback is not needed")
	}
	libpqTLS(cfg)
	if err := handshake(t, cert, cfg.TLSConfig); err != nil {
		t.Fatalf("handshake with the libpq check: %v", err)
	}
}

func handshake(t *testing.T, cert tls.Certificate, client *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := tls.Client(conn, client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return tc.HandshakeContext(ctx)
}
