// Package tlsconfig loads the TLS material shared by the agent, the relay and
// the CLI (certificate, key and CA files) and reloads it when the files
// change, so certificates rotated by cert-manager or a Secret update take
// effect without a restart.
//
// Files are checked at most once per second, on each handshake; a change of
// size or modification time triggers a reload. A reload that fails (a
// half-written file) keeps the previous material and is retried on the next
// handshake.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files names the PEM files of one side of a connection. Empty fields are
// unused: a client without Cert/Key does not present a certificate; a client
// without CA verifies the server against the system roots; a server with CA
// verifies client certificates against it (mutual TLS).
type Files struct {
	Cert string
	Key  string
	CA   string
	// ServerName overrides the name a client verifies in the server's
	// certificate (default: the host part of the address dialed).
	ServerName string
}

// HasCert reports whether a certificate and key are configured.
func (f Files) HasCert() bool { return f.Cert != "" || f.Key != "" }

// Enabled reports whether any TLS material is configured.
func (f Files) Enabled() bool { return f.HasCert() || f.CA != "" }

func (f Files) validate(needCert bool) error {
	if (f.Cert == "") != (f.Key == "") {
		return errors.New("TLS needs both a certificate and a key file (--tls-cert and --tls-key)")
	}
	if needCert && f.Cert == "" {
		return errors.New("TLS server needs a certificate and a key file (--tls-cert and --tls-key)")
	}
	return nil
}

// ClientAuth says how a server treats client certificates.
type ClientAuth int

const (
	// NoClientCert ignores client certificates.
	NoClientCert ClientAuth = iota
	// VerifyIfGiven verifies a client certificate when one is presented and
	// lets the application reject connections without one with a clear
	// error (the handshake itself then succeeds).
	VerifyIfGiven
	// RequireClientCert fails the handshake without a valid certificate.
	RequireClientCert
)

// Server returns a server configuration that reloads its certificate and
// client CA on change. CA is required unless auth is NoClientCert.
func Server(f Files, auth ClientAuth) (*tls.Config, error) {
	if err := f.validate(true); err != nil {
		return nil, err
	}
	if auth != NoClientCert && f.CA == "" {
		return nil, errors.New("mutual TLS needs a CA file to verify client certificates (--tls-ca)")
	}
	r := &reloader{files: f}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m, err := r.get()
		if err != nil {
			return nil, err
		}
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*m.cert},
			NextProtos:   []string{"h2"},
		}
		switch auth {
		case VerifyIfGiven:
			c.ClientAuth = tls.VerifyClientCertIfGiven
			c.ClientCAs = m.pool
		case RequireClientCert:
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = m.pool
		}
		return c, nil
	}
	return base, nil
}

// Client returns a client configuration that reloads its certificate and CA
// on change. Without a CA file the system roots verify the server.
func Client(f Files) (*tls.Config, error) {
	if err := f.validate(false); err != nil {
		return nil, err
	}
	r := &reloader{files: f}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.HasCert() {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			m, err := r.get()
			if err != nil {
				return nil, err
			}
			return m.cert, nil
		}
	}
	if f.CA != "" {
		// The standard verifier reads RootCAs once; verify ourselves against
		// the current pool so a rotated CA applies to new connections.
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			m, err := r.get()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				DNSName:       cs.ServerName,
				Roots:         m.pool,
				Intermediates: inter,
			})
			if err != nil {
				return fmt.Errorf("verify server certificate: %w", err)
			}
			return nil
		}
	}
	return c, nil
}

type material struct {
	cert *tls.Certificate
	pool *x509.CertPool
}

type stamp struct {
	size int64
	mod  time.Time
}

type reloader struct {
	files Files

	mu      sync.Mutex
	cur     *material
	stamps  [3]stamp
	checked time.Time
}

func (r *reloader) paths() [3]string { return [3]string{r.files.Cert, r.files.Key, r.files.CA} }

// get returns the current material, reloading it when a file changed.
func (r *reloader) get() (*material, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.cur != nil && now.Sub(r.checked) < time.Second {
		return r.cur, nil
	}
	r.checked = now
	var st [3]stamp
	for i, p := range r.paths() {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			if r.cur != nil {
				return r.cur, nil // keep serving the last good material
			}
			return nil, fmt.Errorf("TLS file: %w", err)
		}
		st[i] = stamp{fi.Size(), fi.ModTime()}
	}
	if r.cur != nil && st == r.stamps {
		return r.cur, nil
	}
	m, err := load(r.files)
	if err != nil {
		if r.cur != nil {
			return r.cur, nil
		}
		return nil, err
	}
	r.cur, r.stamps = m, st
	return m, nil
}

func load(f Files) (*material, error) {
	m := &material{}
	if f.Cert != "" {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", f.Cert, f.Key, err)
		}
		m.cert = &c
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("read TLS CA: %w", err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA %s holds no PEM certificate", f.CA)
		}
	}
	return m, nil
}
