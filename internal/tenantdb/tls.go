package tenantdb

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
)

// libpqTLS makes sslmode=verify-full check the server's certificate as
// libpq does. pgx leaves that mode to crypto/tls, which refuses a
// certificate that names its host only in the Common Name; libpq accepts
// one when the certificate has no subjectAltName at all, and operators'
// tenant databases still use such certificates. Other modes are already
// libpq's in pgx (require, with sslrootcert, verifies the chain).
func libpqTLS(cfg *pgx.ConnConfig) {
	fix := func(c *tls.Config) {
		// verify-full is the one mode pgx leaves to crypto/tls's own
		// verification.
		if c == nil || c.InsecureSkipVerify || c.VerifyPeerCertificate != nil {
			return
		}
		host, roots := c.ServerName, c.RootCAs
		c.InsecureSkipVerify = true
		c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyFull(raw, roots, host)
		}
	}
	fix(cfg.TLSConfig)
	for _, fb := range cfg.Fallbacks {
		fix(fb.TLSConfig)
	}
}

// verifyFull checks the chain against roots (nil: the system's) and the
// host against the certificate: its subjectAltNames when it has any, else
// its Common Name, as libpq does.
func verifyFull(raw [][]byte, roots *x509.CertPool, host string) error {
	if len(raw) == 0 {
		return errors.New("the server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		certs[i] = c
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(opts); err != nil {
		return err
	}
	if len(leaf.DNSNames) > 0 || len(leaf.IPAddresses) > 0 || len(leaf.URIs) > 0 || len(leaf.EmailAddresses) > 0 {
		return leaf.VerifyHostname(host)
	}
	if matchName(leaf.Subject.CommonName, host) {
		return nil
	}
	return fmt.Errorf("server certificate for %q (Common Name, no subjectAltName) does not match host %q", leaf.Subject.CommonName, host)
}

// matchName matches a host against a certificate name as libpq does: case
// insensitively, with a leading "*." matching exactly one label; an IP
// address only literally.
func matchName(name, host string) bool {
	name, host = strings.ToLower(strings.TrimSuffix(name, ".")), strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "" || host == "" {
		return false
	}
	if name == host {
		return true
	}
	if net.ParseIP(host) != nil {
		return false
	}
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		label, domain, found := strings.Cut(host, ".")
		return found && label != "" && domain == rest
	}
	return false
}
