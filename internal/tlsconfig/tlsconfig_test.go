package tlsconfig_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/internal/tlsconfig"
)

// handshake connects a client to a server config over loopback and returns
// the client's error and the common name of the certificate it saw.
func handshake(t *testing.T, server, client *tls.Config) (string, error) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			time.Sleep(50 * time.Millisecond)
			c.Close()
		}
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(), client)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	// TLS 1.3 reports a rejected client certificate on the first read.
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil && !os.IsTimeout(err) && err.Error() != "EOF" {
		return "", err
	}
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func TestMutualTLSAcceptsOnlyClientsSignedByTheCA(t *testing.T) {
	pki, err := tlsconfig.WriteDevPKI(t.TempDir(), nil, "agent")
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlsconfig.WriteDevPKI(t.TempDir(), nil, "stranger")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tlsconfig.Server(pki.Server, tlsconfig.RequireClientCert)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		client tlsconfig.Files
		ok     bool
	}{
		{"a client with a certificate from the CA connects", pki.Clients["agent"], true},
		{"a client without a certificate is refused", tlsconfig.Files{CA: pki.CA}, false},
		{"a client with another CA's certificate is refused", tlsconfig.Files{Cert: other.Clients["stranger"].Cert, Key: other.Clients["stranger"].Key, CA: pki.CA}, false},
		{"a client that trusts another CA refuses the server", other.Clients["stranger"], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.client.ServerName = "localhost"
			cc, err := tlsconfig.Client(tc.client)
			if err != nil {
				t.Fatal(err)
			}
			_, err = handshake(t, srv, cc)
			if (err == nil) != tc.ok {
				t.Fatalf("handshake error %v, want success %v", err, tc.ok)
			}
		})
	}
}

func TestRotatedServerCertificateIsServedWithoutRestart(t *testing.T) {
	pki, err := tlsconfig.WriteDevPKI(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tlsconfig.Server(pki.Server, tlsconfig.NoClientCert)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := tlsconfig.Client(tlsconfig.Files{CA: pki.CA, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if cn, err := handshake(t, srv, cc); err != nil || cn != "server" {
		t.Fatalf("first handshake: %q, %v", cn, err)
	}
	// Rotate the files in place: the reissued certificate has a new serial.
	first := serialOf(t, srv, cc)
	if _, err := pki.Issue("server", []string{"localhost", "127.0.0.1"}, x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatal(err)
	}
	// Make the change visible even on coarse mtimes; files are checked at
	// most once a second.
	later := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(pki.Server.Cert, later, later)
	time.Sleep(1100 * time.Millisecond)
	if second := serialOf(t, srv, cc); second == first {
		t.Fatalf("server still presents serial %s after the certificate file changed", first)
	}
}

func serialOf(t *testing.T, srv, cc *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestBadInputIsNamed(t *testing.T) {
	tests := []struct {
		name string
		run  func() error
	}{
		{"a certificate without a key", func() error { _, err := tlsconfig.Client(tlsconfig.Files{Cert: "x.pem"}); return err }},
		{"a server without a certificate", func() error { _, err := tlsconfig.Server(tlsconfig.Files{}, tlsconfig.NoClientCert); return err }},
		{"mutual TLS without a CA", func() error {
			_, err := tlsconfig.Server(tlsconfig.Files{Cert: "a", Key: "b"}, tlsconfig.RequireClientCert)
			return err
		}},
		{"a missing CA file", func() error { _, err := tlsconfig.Client(tlsconfig.Files{CA: "/nonexistent/ca.pem"}); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
