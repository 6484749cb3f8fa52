// Package logging is the binaries' one --log-level flag and stderr logger.
package logging

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Level is a --log-level flag value (pflag.Value): slog's names, any case.
// Anything else is an error, never silently info.
type Level struct{ L *slog.Level }

func (f Level) String() string { return strings.ToLower(f.L.String()) }
func (f Level) Type() string   { return "level" }

func (f Level) Set(s string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("want debug, info, warn or error, got %q", s)
	}
	*f.L = l
	return nil
}

// New is a text logger on stderr at level.
func New(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
