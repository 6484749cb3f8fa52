// Package client opens the CLI's gRPC connection to a Trawl relay, with the
// connection flags Hubble users know (--server, --tls*, --timeout) plus a
// bearer token.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// DefaultServer is the relay's observer API on this machine (Hubble relay's port).
const DefaultServer = "localhost:4245"

// EnvServer overrides the default of --server.
const EnvServer = "TRAWL_SERVER"

// Options says how to reach the relay.
type Options struct {
	// Server is host:port; a "tls://" prefix turns TLS on, "http://"-less plain
	// host:port is insecure unless TLS is asked for.
	Server string
	// TLS turns on TLS; it is implied by the other TLS options.
	TLS            bool
	CACertFiles    []string
	ClientCertFile string
	ClientKeyFile  string
	ServerName     string
	AllowInsecure  bool
	// DialTimeout bounds connecting; RequestTimeout bounds unary calls.
	DialTimeout    time.Duration
	RequestTimeout time.Duration
	// Token is sent as "authorization: Bearer <token>" when set.
	Token string
}

// DefaultOptions reads TRAWL_SERVER and TRAWL_TOKEN from the environment.
func DefaultOptions() Options {
	server := os.Getenv(EnvServer)
	if server == "" {
		server = DefaultServer
	}
	return Options{
		Server:         server,
		DialTimeout:    5 * time.Second,
		RequestTimeout: 12 * time.Second,
		Token:          os.Getenv("TRAWL_TOKEN"),
	}
}

// AddFlags registers the connection flags on fs, defaulting to o's values.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Server, "server", o.Server, "address of the Trawl relay (env "+EnvServer+"); a tls:// prefix turns on TLS")
	fs.BoolVar(&o.TLS, "tls", o.TLS, "use TLS to reach the relay (on by default for tls:// addresses)")
	fs.StringSliceVar(&o.CACertFiles, "tls-ca-cert-files", o.CACertFiles, "PEM files of CAs to trust instead of the system's")
	fs.StringVar(&o.ClientCertFile, "tls-client-cert-file", o.ClientCertFile, "PEM client certificate (implies --tls)")
	fs.StringVar(&o.ClientKeyFile, "tls-client-key-file", o.ClientKeyFile, "PEM client key (implies --tls)")
	fs.StringVar(&o.ServerName, "tls-server-name", o.ServerName, "name to verify the server certificate against")
	fs.BoolVar(&o.AllowInsecure, "tls-allow-insecure", o.AllowInsecure, "skip verifying the server certificate (not recommended)")
	fs.DurationVar(&o.DialTimeout, "timeout", o.DialTimeout, "how long to wait for the connection to the relay")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", o.RequestTimeout, "timeout of unary calls (status, nodes, top)")
	fs.StringVar(&o.Token, "token", o.Token, "bearer token sent to the relay (env TRAWL_TOKEN)")
}

// ErrUnreachable is wrapped when the relay cannot be reached.
var ErrUnreachable = errors.New("cannot reach the Trawl relay")

// address strips the scheme Hubble users may type and says whether it asks for TLS.
func (o Options) address() (addr string, tlsWanted bool) {
	addr = o.Server
	switch {
	case strings.HasPrefix(addr, "tls://"):
		return strings.TrimPrefix(addr, "tls://"), true
	case strings.HasPrefix(addr, "unix://"):
		return addr, false
	}
	return addr, false
}

// Validate checks the options without touching the network.
func (o Options) Validate() error {
	if strings.TrimSpace(o.Server) == "" {
		return errors.New("--server is empty")
	}
	if (o.ClientCertFile == "") != (o.ClientKeyFile == "") {
		return errors.New("--tls-client-cert-file and --tls-client-key-file must be given together")
	}
	if o.DialTimeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.DialTimeout)
	}
	return nil
}

func (o Options) transport() (credentials.TransportCredentials, error) {
	_, tlsWanted := o.address()
	if !(o.TLS || tlsWanted || o.ClientCertFile != "" || len(o.CACertFiles) > 0 || o.ServerName != "" || o.AllowInsecure) {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.AllowInsecure, //nolint:gosec // explicit user choice, flagged as not recommended
	}
	if len(o.CACertFiles) > 0 {
		pool := x509.NewCertPool()
		for _, f := range o.CACertFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read CA file: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s holds no PEM certificate", f)
			}
		}
		cfg.RootCAs = pool
	}
	if o.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.ClientCertFile, o.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

// Conn is an open connection and the settings calls on it use.
type Conn struct {
	*grpc.ClientConn
	opts Options
}

// Dial connects and waits until the connection is ready or DialTimeout
// passes, so an unreachable relay is reported at once with its address
// instead of as a vague error from the first call.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	creds, err := o.transport()
	if err != nil {
		return nil, err
	}
	addr, _ := o.address()
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
	if o.Token != "" {
		dialOpts = append(dialOpts,
			grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				return invoker(withToken(ctx, o.Token), method, req, reply, cc, opts...)
			}),
			grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(withToken(ctx, o.Token), desc, cc, method, opts...)
			}),
		)
	}
	cc, err := grpc.NewClient(addr, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, o.Server, err)
	}
	wctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return &Conn{ClientConn: cc, opts: o}, nil
		}
		if s == connectivity.TransientFailure {
			// Fail at once with the reason instead of retrying until the
			// timeout: a CLI user wants to know now.
			cc.Close()
			return nil, fmt.Errorf("%w at %s: %s", ErrUnreachable, o.Server, probe(wctx, addr))
		}
		if !cc.WaitForStateChange(wctx, s) {
			cc.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w at %s: not ready after %s (state %s)", ErrUnreachable, o.Server, o.DialTimeout, s)
		}
	}
}

// Unary returns a context bounded by --request-timeout for one unary call.
func (c *Conn) Unary(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.opts.RequestTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.RequestTimeout)
}

// Server is the address as the user gave it, for messages.
func (c *Conn) Server() string { return c.opts.Server }

// probe names why addr cannot be reached, by dialing it plainly.
func probe(ctx context.Context, addr string) string {
	if strings.HasPrefix(addr, "unix://") {
		return "connection failed"
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			return op.Err.Error()
		}
		return err.Error()
	}
	c.Close()
	return "connection failed although the port is open (TLS or not a Trawl relay?)"
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
