package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/trawl-dev/trawl/internal/tlsconfig"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

type statusServer struct {
	observerv1.UnimplementedObserverServer
}

func (statusServer) ServerStatus(context.Context, *observerv1.ServerStatusRequest) (*observerv1.ServerStatusResponse, error) {
	return &observerv1.ServerStatusResponse{Version: "tls-ok"}, nil
}

// startTLS serves the observer with a dev PKI's server certificate; the
// server requires client certificates when mutual is set.
func startTLS(t *testing.T, mutual bool) (addr string, pki *tlsconfig.DevPKI) {
	t.Helper()
	pki, err := tlsconfig.WriteDevPKI(t.TempDir(), []string{"relay.trawl.test"}, "cli")
	if err != nil {
		t.Fatal(err)
	}
	auth := tlsconfig.NoClientCert
	if mutual {
		auth = tlsconfig.RequireClientCert
	}
	cfg, err := tlsconfig.Server(pki.Server, auth)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	observerv1.RegisterObserverServer(g, statusServer{})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String(), pki
}

func call(o Options) error {
	o.DialTimeout = 5 * time.Second
	conn, err := Dial(context.Background(), o)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := conn.Unary(context.Background())
	defer cancel()
	st, err := observerv1.NewObserverClient(conn).ServerStatus(ctx, &observerv1.ServerStatusRequest{})
	if err == nil && st.GetVersion() != "tls-ok" {
		return errors.New("wrong server")
	}
	return err
}

func TestTLSFlags(t *testing.T) {
	addr, pki := startTLS(t, false)
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"the CA and the server's name verify it", Options{Server: addr, CACertFiles: []string{pki.CA}, ServerName: "relay.trawl.test"}, true},
		{"a tls:// address with the CA", Options{Server: "tls://" + addr, CACertFiles: []string{pki.CA}}, true},
		{"a wrong server name fails", Options{Server: addr, CACertFiles: []string{pki.CA}, ServerName: "other.example"}, false},
		{"--tls without the CA fails verification", Options{Server: addr, TLS: true}, false},
		{"--tls-allow-insecure skips verification", Options{Server: addr, TLS: true, AllowInsecure: true}, true},
		{"plaintext to a TLS server fails", Options{Server: addr}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := call(tt.opts)
			if tt.ok && err != nil {
				t.Fatalf("failed: %v", err)
			}
			if !tt.ok && err == nil {
				t.Fatal("succeeded, want a failure")
			}
			if !tt.ok && !strings.Contains(err.Error(), addr) {
				t.Fatalf("error %q does not name the server", err)
			}
		})
	}
}

func TestMutualTLSSendsTheClientCertificate(t *testing.T) {
	addr, pki := startTLS(t, true)
	cli := pki.Clients["cli"]
	if err := call(Options{Server: addr, CACertFiles: []string{pki.CA}, ClientCertFile: cli.Cert, ClientKeyFile: cli.Key}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if err := call(Options{Server: addr, CACertFiles: []string{pki.CA}}); err == nil {
		t.Fatal("without a client certificate the call succeeded")
	}
}

func TestOptionsThatCannotWork(t *testing.T) {
	for name, o := range map[string]Options{
		"an empty server":           {Server: " ", DialTimeout: time.Second},
		"a certificate without key": {Server: "x:1", ClientCertFile: "c.pem", DialTimeout: time.Second},
		"a zero timeout":            {Server: "x:1"},
		"a CA file that is missing": {Server: "x:1", CACertFiles: []string{"/nonexistent.pem"}, DialTimeout: time.Second},
	} {
		if _, err := Dial(context.Background(), o); err == nil {
			t.Errorf("%s: Dial succeeded", name)
		}
	}
}
