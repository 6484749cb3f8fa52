package relay

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/trawl-dev/trawl/internal/tlsconfig"
	"github.com/trawl-dev/trawl/internal/vtcodec"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/hubble"
	"github.com/trawl-dev/trawl/relay/ingest"
)

func commonServerOpts(cfg Config, ka keepalive.ServerParameters) []grpc.ServerOption {
	ka.Time, ka.Timeout = cfg.Keepalive, 20*time.Second
	return []grpc.ServerOption{
		grpc.KeepaliveParams(ka),
		// Agents and CLIs ping every 30 s or more; allow down to 10 s.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxSendMsgSize(16 << 20),
	}
}

func serverCreds(f tlsconfig.Files, auth tlsconfig.ClientAuth, insecureOK bool) (credentials.TransportCredentials, error) {
	if !f.HasCert() {
		if !insecureOK {
			return nil, errors.New("no certificate configured and --insecure not given")
		}
		return insecure.NewCredentials(), nil
	}
	if auth == tlsconfig.NoClientCert {
		f.CA = ""
	}
	tc, err := tlsconfig.Server(f, auth)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}

// newIngestServer builds the agents' gRPC server. It verifies a client
// certificate when given and the ingest handler refuses streams without
// one, with an error naming the problem (a failed handshake would only say
// "connection reset").
func (r *Relay) newIngestServer() error {
	cfg := r.cfg
	auth := tlsconfig.NoClientCert
	if cfg.IngestTLS.CA != "" {
		auth = tlsconfig.VerifyIfGiven
	}
	creds, err := serverCreds(cfg.IngestTLS, auth, cfg.Insecure)
	if err != nil {
		return fmt.Errorf("ingest TLS: %w", err)
	}
	// An agent's stream lives as long as its connection: after the maximum
	// age it gets a GOAWAY and, after the grace, the stream ends and the
	// agent reconnects (through the load balancer, maybe elsewhere).
	var ka keepalive.ServerParameters
	if age := cfg.IngestMaxConnectionAge; age > 0 {
		ka.MaxConnectionAge, ka.MaxConnectionAgeGrace = age, min(age, 30*time.Second)
	}
	r.ingestSrv = grpc.NewServer(append(commonServerOpts(cfg, ka), grpc.Creds(creds),
		grpc.MaxRecvMsgSize(cfg.Limits.MaxBatchBytes+(1<<20)),
		// Batch sizes from gRPC's own count: no second walk over each batch.
		grpc.StatsHandler(ingest.StatsHandler()),
		// Generated (reflection-free) decoding of batches; health and
		// reflection on this server go through its fallback.
		grpc.ForceServerCodecV2(vtcodec.Codec{}))...)
	ingestv1.RegisterIngestServiceServer(r.ingestSrv, r.ingest)
	r.ingestHealth = health.NewServer()
	healthpb.RegisterHealthServer(r.ingestSrv, r.ingestHealth)
	reflection.Register(r.ingestSrv)
	return nil
}

// newObserverServer builds the CLIs' gRPC server: Trawl's observer API and
// Hubble's on one listener, behind the bearer token when one is set.
func (r *Relay) newObserverServer() error {
	cfg := r.cfg
	otls := cfg.ObserverTLS
	if !otls.HasCert() {
		otls.Cert, otls.Key = cfg.IngestTLS.Cert, cfg.IngestTLS.Key
	}
	oauth := tlsconfig.NoClientCert
	if otls.CA != "" {
		oauth = tlsconfig.RequireClientCert
	}
	creds, err := serverCreds(otls, oauth, cfg.Insecure)
	if err != nil {
		return fmt.Errorf("observer TLS: %w", err)
	}
	auth := tokenAuth(cfg.ObserverToken)
	r.observerSrv = grpc.NewServer(append(commonServerOpts(cfg, keepalive.ServerParameters{}), grpc.Creds(creds),
		grpc.MaxRecvMsgSize(cfg.MaxObserverMsgBytes),
		grpc.ChainUnaryInterceptor(auth.unary), grpc.ChainStreamInterceptor(auth.stream))...)
	observerv1.RegisterObserverServer(r.observerSrv, r.observer)
	r.observerHealth = health.NewServer()
	healthpb.RegisterHealthServer(r.observerSrv, r.observerHealth)
	hubble.Register(r.observerSrv, r.observerHealth, hubble.NewServer(
		hubble.ServerConfig{TLS: otls.HasCert(), TeardownDrops: cfg.Hubble.TeardownDrops, Log: cfg.Log}, r.observer, r.back))
	reflection.Register(r.observerSrv)
	return nil
}
