// Package cluster holds the commands that ask the relay about the system
// rather than about flows: `trawl status`, `trawl nodes`, `trawl conntrack`
// and `trawl top`.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/cli/client"
	"github.com/trawl-dev/trawl/cli/usage"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Deps are what every command here needs.
type Deps struct {
	Conn *client.Options
	Now  func() time.Time
}

func (d Deps) dial(ctx context.Context) (*client.Conn, observerv1.ObserverClient, error) {
	conn, err := client.Dial(ctx, *d.Conn)
	if err != nil {
		return nil, nil, err
	}
	return conn, observerv1.NewObserverClient(conn), nil
}

// callError words a failed call; an unreachable relay names its address.
func callError(server, what string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable:
		return fmt.Errorf("%w at %s: %s", client.ErrUnreachable, server, status.Convert(err).Message())
	case codes.InvalidArgument:
		return usage.Error(fmt.Errorf("the relay rejected the %s request: %s", what, status.Convert(err).Message()))
	case codes.Canceled:
		return context.Canceled
	}
	return fmt.Errorf("%s from %s: %s: %s", what, server, status.Code(err), status.Convert(err).Message())
}

// checkFormat accepts the -o values of these commands.
func checkFormat(f string) error {
	switch f {
	case "table", "json":
		return nil
	}
	return usage.Error(fmt.Errorf("invalid output format %q: want table or json", f))
}

// writeJSON prints a message as one line of protojson with proto names,
// with the unstable spacing protojson adds normalised away.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	b, _ = json.Marshal(v)
	_, err = w.Write(append(b, '\n'))
	return err
}

// group formats n with thousands separators, as Hubble's status does.
func group(n uint64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// ago says how long ago t was, coarsely.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return human(d) + " ago"
}

// human prints a duration the way kubectl's AGE column does.
func human(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// bar draws a utilization bar of width cells, e.g. "[####------]".
func bar(frac float64, width int) string {
	if frac < 0 {
		frac = 0
	}
	if frac > 1 {
		frac = 1
	}
	n := int(frac*float64(width) + 0.5)
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]"
}
