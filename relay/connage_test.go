package relay_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/relay"
)

// lockedBuffer is a log destination goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// After its maximum age an agent's connection ends and the agent connects
// again (behind a load balancer: to any replica), losing and repeating
// nothing it sent meanwhile.
func TestAnAgentsConnectionEndsAtItsMaximumAgeAndTheAgentComesBackWithoutLoss(t *testing.T) {
	dsn := chtest.Database(t)
	var logs lockedBuffer
	r := startRelay(t, dsn, func(c *relay.Config) {
		c.IngestMaxConnectionAge = 300 * time.Millisecond
		c.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	s := startShipper(t, r.IngestAddr(), "node-age", nil)
	const n = 60
	start := time.Now()
	for i := 0; i < n; i++ {
		publish(s, realisticFlow(i, start.Add(time.Duration(i)*time.Millisecond)))
		time.Sleep(25 * time.Millisecond) // 1.5 s: several connection ages
	}
	waitFor(t, "every record acknowledged", 30*time.Second, func() bool { return acked(s) })
	waitFor(t, "every record stored", 30*time.Second, func() bool { rows, _ := countRows(t, dsn, "flows"); return rows >= n })
	if rows, distinct := countRows(t, dsn, "flows"); rows != n || distinct != n {
		t.Errorf("stored %d rows, %d distinct; want %d of each", rows, distinct, n)
	}
	if got := logs.count("agent connected"); got < 2 {
		t.Errorf("the agent connected %d times in 1.5 s with a maximum age of 300 ms; want it to come back at least once", got)
	}
}
