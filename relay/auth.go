package relay

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// authenticator checks the observer API's bearer token (health checks are
// exempt so probes work without it).
type authenticator struct{ token string }

func tokenAuth(token string) authenticator { return authenticator{token} }

func (a authenticator) check(ctx context.Context, method string) error {
	if a.token == "" || strings.HasPrefix(method, "/grpc.health.v1.Health/") {
		return nil
	}
	if strings.HasPrefix(method, "/grpc.reflection.") {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		tok, ok := strings.CutPrefix(v, "Bearer ")
		if !ok {
			// Basic auth with the token as password, any user: what the
			// hubble CLI can send (--basic-auth-username/-password).
			tok, ok = basicPassword(v)
		}
		if ok && subtle.ConstantTimeCompare([]byte(tok), []byte(a.token)) == 1 {
			return nil
		}
	}
	if len(md.Get("authorization")) == 0 {
		return status.Error(codes.Unauthenticated, "this relay requires a bearer token (trawl --token or TRAWL_TOKEN)")
	}
	return status.Error(codes.Unauthenticated, "bearer token rejected")
}

func basicPassword(v string) (string, bool) {
	enc, ok := strings.CutPrefix(v, "Basic ")
	if !ok {
		return "", false
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", false
	}
	_, pass, ok := strings.Cut(string(b), ":")
	return pass, ok
}

func (a authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (a authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}
