package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/trawl-dev/trawl/dev/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func run(args ...string) (string, error) {
	cmd := newCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCommandLine(t *testing.T) {
	dsn := chtest.Database(t)
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{"--version prints the version", []string{"--version"}, "trawl-relay version", ""},
		{"--help lists serve, migrate and the ClickHouse flag", []string{"--help"}, "--clickhouse-dsn", ""},
		{"serving without TLS or --insecure is refused with the fix named", []string{"--clickhouse-dsn", dsn}, "", "--insecure"},
		{"mutual TLS without a certificate is refused", []string{"--tls-ca", "/ca.pem", "--clickhouse-dsn", dsn}, "", "--tls-cert"},
		{"a retention under an hour is refused", []string{"--insecure", "--retention", "5m", "--clickhouse-dsn", dsn}, "", "--retention"},
		{"a missing token file is named", []string{"--observer-token-file", "/nonexistent/token"}, "", "observer token"},
		{"a bad --log-level is refused", []string{"--log-level", "loud", "--insecure", "--clickhouse-dsn", dsn}, "", "--log-level"},
		{"a bad --log-level is refused by migrate too", []string{"migrate", "--log-level", "verbose", "--clickhouse-dsn", dsn}, "", "--log-level"},
		{"stray arguments are refused", []string{"serve", "extra"}, "", "unknown command"},
		{"migrate creates the schema", []string{"migrate", "--clickhouse-dsn", dsn}, "", ""},
		{"migrate twice is a no-op", []string{"migrate", "--clickhouse-dsn", dsn}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(tc.args...)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Fatalf("output %q lacks %q", out, tc.wantOut)
			}
		})
	}
}
