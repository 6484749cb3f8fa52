package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// DevPKI is a throw-away certificate authority with one server and any number
// of client certificates, written as PEM files. Tests, the demo and the
// local dev stack use it; production clusters bring their own (cert-manager).
type DevPKI struct {
	Dir string
	CA  string
	// Server is the server's certificate files (CA included for clients).
	Server Files
	// Clients maps a client's common name to its files.
	Clients map[string]Files

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// WriteDevPKI creates a CA in dir, a server certificate valid for
// serverNames (DNS names or IP addresses; "localhost" and 127.0.0.1 are always
// included) and one client certificate per name in clients.
func WriteDevPKI(dir string, serverNames []string, clients ...string) (*DevPKI, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "trawl dev CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * 365 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := &DevPKI{Dir: dir, CA: filepath.Join(dir, "ca.pem"), Clients: map[string]Files{}, caCert: caCert, caKey: caKey}
	if err := writePEM(p.CA, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	names := append([]string{"localhost", "127.0.0.1", "::1"}, serverNames...)
	if p.Server, err = p.Issue("server", names, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	for _, c := range clients {
		f, err := p.Issue(c, []string{c}, x509.ExtKeyUsageClientAuth)
		if err != nil {
			return nil, err
		}
		p.Clients[c] = f
	}
	return p, nil
}

// Issue signs a new certificate named cn for the given DNS names/IPs and
// writes it as <cn>.pem and <cn>-key.pem (overwriting: used to test reload).
func (p *DevPKI) Issue(cn string, names []string, usage x509.ExtKeyUsage) (Files, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	t := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * 30 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, t, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return Files{}, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Files{}, err
	}
	f := Files{Cert: filepath.Join(p.Dir, cn+".pem"), Key: filepath.Join(p.Dir, cn+"-key.pem"), CA: p.CA}
	// Key first, certificate last: a reader that sees the new certificate
	// finds the matching key.
	if err := writePEM(f.Key, "EC PRIVATE KEY", kder); err != nil {
		return Files{}, err
	}
	if err := writePEM(f.Cert, "CERTIFICATE", der); err != nil {
		return Files{}, err
	}
	return f, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writePEM(path, typ string, der []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
