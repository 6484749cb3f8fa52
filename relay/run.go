package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/trawl-dev/trawl/internal/version"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// Run serves until ctx ends, then shuts down: ingest stops first (agents
// reconnect elsewhere and resend what was not acked), the writer flushes,
// then the observer API and the store close.
func (r *Relay) Run(ctx context.Context) error {
	err := errors.New("relay: Run called twice")
	r.runOnce.Do(func() { err = r.run(ctx) })
	return err
}

func (r *Relay) run(ctx context.Context) error {
	defer r.close()
	limit, restore := applyMemoryLimit(r.cfg.MemoryLimit)
	if limit > 0 {
		defer restore()
		r.log.Info("soft memory limit", "bytes", limit)
	}
	if budget := r.memoryBudget(limit); budget > 0 {
		release, held := holdHeapBudget(budget, r.log)
		if held {
			defer release()
			r.log.Info("memory budget held", "heap_bytes", budget)
		} else {
			r.log.Info("memory budget not held: GOGC is set, or another relay of this process holds one", "heap_bytes", budget)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	goRun := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && ctx.Err() == nil {
				select {
				case errc <- fmt.Errorf("%s: %w", name, err):
				default: // the first failure is already shutting the relay down
				}
			}
		}()
	}
	// The writer outlives the ingest server so acked work is flushed.
	wctx, wcancel := context.WithCancel(context.Background())
	var wwg sync.WaitGroup
	wwg.Add(1)
	go func() {
		defer wwg.Done()
		if err := r.back.Run(wctx); err != nil && wctx.Err() == nil {
			select {
			case errc <- fmt.Errorf("clickhouse writer: %w", err):
			default:
			}
		}
	}()
	goRun("ingest server", func() error { return r.ingestSrv.Serve(r.ingestLis) })
	goRun("observer server", func() error { return r.observerSrv.Serve(r.observerLis) })
	if r.metricsSrv != nil {
		goRun("metrics server", func() error {
			if err := r.metricsSrv.Serve(r.metricsLis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	goRun("node status writer", func() error { r.writeNodes(ctx); return nil })
	r.log.Info("relay serving", "observer", r.ObserverAddr(), "ingest", r.IngestAddr(), "metrics", r.MetricsAddr(), "version", version.Version)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		r.log.Error("relay failed; shutting down", "err", runErr)
	}
	cancel()
	r.ingestHealth.Shutdown()
	r.observerHealth.Shutdown()
	// Stop ingest; if a stream is stuck in a full writer queue, stopping
	// the writer releases it (its batch stays unacked and is resent).
	ingestStopped := make(chan struct{})
	go func() { stop(r.ingestSrv, r.cfg.ShutdownTimeout/2); close(ingestStopped) }()
	select {
	case <-ingestStopped:
	case <-time.After(r.cfg.ShutdownTimeout / 2):
	}
	wcancel()
	wwg.Wait()
	<-ingestStopped
	stop(r.observerSrv, time.Second)
	if r.metricsSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		_ = r.metricsSrv.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	r.log.Info("relay stopped")
	return runErr
}

// memoryBudget is the heap budget to hold (0: none) under the memory limit
// applied (0: none).
func (r *Relay) memoryBudget(limit int64) int64 {
	budget := r.cfg.MemoryBudget
	if budget < 0 {
		return 0
	}
	if budget == 0 {
		q := r.cfg.QueueBytes
		if q <= 0 {
			q = store.DefaultQueueBytes
		}
		budget = autoHeapBudget(q)
	}
	// The limit counts what the runtime holds besides the heap too.
	if limit > 0 && budget > limit*3/4 {
		budget = limit * 3 / 4
	}
	return budget
}

// stop drains a gRPC server, cutting long streams after timeout.
func stop(s *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
		<-done
	}
}

// writeNodes copies node status changes to ClickHouse, at most one write per
// node per 15 s unless its state changes.
func (r *Relay) writeNodes(ctx context.Context) {
	type last struct {
		at    time.Time
		state flowv1.NodeState
	}
	written := map[string]last{}
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-r.nodeUpdates:
			l := written[s.GetNodeName()]
			if l.state == s.GetState() && time.Since(l.at) < 15*time.Second {
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := r.back.UpsertNode(wctx, s)
			cancel()
			if err != nil {
				r.log.Warn("store node status", "node", s.GetNodeName(), "err", err)
				continue
			}
			written[s.GetNodeName()] = last{time.Now(), s.GetState()}
		}
	}
}
