// Package shipper is the agent's end of the agent → relay stream
// (trawl.ingest.v1). The datapath hands it records with Publish, which never
// blocks on the network; the shipper groups them into numbered batches, keeps
// every batch until the relay acknowledges it (the relay acks only after the
// batch is in ClickHouse), and resends unacknowledged batches in order after a
// reconnect. The relay de-duplicates resends by (node, boot id, sequence).
//
// The buffer of unacknowledged batches is bounded (Config.BufferBytes). A
// sealed batch is held encoded, as the StreamRequest bytes that are sent and
// resent (as decoded messages the same batches took about five times their
// encoded size), in one mapping of BufferBytes made resident when the
// shipper is made (arena.go says why): the buffer's memory is the bound from
// the start, full or empty. When a batch does not fit the oldest batches are
// dropped and exactly their records are counted as lost (trawl_agent_lost_events_total{cause="buffer_overflow"});
// the relay learns about them through a LostEvent record (source
// AGENT_BUFFER_OVERFLOW) sent as soon as the stream is up. Records of a batch
// the relay rejects (Nack) are counted with cause "batch_rejected" and also
// reported as a LostEvent (BATCH_REJECTED).
//
// A batch dropped while it is in flight on the current stream is counted as
// lost only if the stream ends without an Ack for it, so the count never
// includes records the relay stored.
//
// Metric registration: trawl_agent_lost_events_total is shared with the
// datapath, which counts other causes. Pass its CounterVec (label "cause") in
// Config.LostCounter; when nil the shipper creates it, and if the registerer
// already holds it the existing collector is used.
package shipper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/backoff"
	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/grpczstd"
	"github.com/trawl-dev/trawl/internal/tlsconfig"
	"github.com/trawl-dev/trawl/internal/version"
	"github.com/trawl-dev/trawl/internal/vtcodec"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Config configures a Shipper. Zero values pick the defaults below.
type Config struct {
	// Addr is the relay's ingest address, host:port (default localhost:4246).
	Addr string
	// NodeName identifies this node; required.
	NodeName string
	// BootID is random per agent start (generated when empty); sequences
	// restart at 1 with a new one.
	BootID string
	// BufferBytes bounds the unacknowledged batches, which are held encoded
	// (their size on the wire before compression). It is also the memory
	// the buffer takes, resident from the start (default 64 MiB).
	BufferBytes int
	// BatchRecords closes a batch at this many records (default 1000).
	BatchRecords int
	// FlushInterval closes a non-empty batch after this long (default 1 s).
	FlushInterval time.Duration
	// HeartbeatInterval is the period of heartbeats (default 10 s).
	HeartbeatInterval time.Duration
	// TLS files; the relay is verified against CA (system roots when empty),
	// Cert/Key are presented for mutual TLS.
	TLS tlsconfig.Files
	// Insecure sends in plaintext; only when asked for explicitly.
	Insecure bool
	// MaxInflight bounds batches sent but not yet acknowledged on one stream
	// (default 128). The relay acks only after its ClickHouse insert, which
	// may wait for a full insert block: the window must cover that.
	MaxInflight int
	// LostCounter is trawl_agent_lost_events_total (label "cause") when the
	// caller already registered it. Optional.
	LostCounter *prometheus.CounterVec
	// Compression of the stream: "zstd" (default), "gzip" or "none". The
	// relay decompresses any of them. docs/benchmarks/relay.md has the
	// bytes per flow and the CPU of each.
	Compression string
	// Kernel is reported in Hello (default: uname release).
	Kernel string
	// Log receives connection state changes (default slog.Default()).
	Log *slog.Logger
	// DrainTimeout is how long the agent waits at shutdown for the relay to
	// acknowledge what it holds (default 20 s, inside Kubernetes' default
	// 30 s grace period). Used by the caller of Drain.
	DrainTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultAddr              = "localhost:4246"
	DefaultCompression       = grpczstd.Name
	DefaultBufferBytes       = 64 << 20
	DefaultBatchRecords      = 1000
	DefaultFlushInterval     = time.Second
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultMaxInflight       = 128
	DefaultDrainTimeout      = 20 * time.Second
)

// RegisterFlags adds the shipper's flags to fs, writing into cfg.
func RegisterFlags(fs *pflag.FlagSet, cfg *Config) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.BufferBytes == 0 {
		cfg.BufferBytes = DefaultBufferBytes
	}
	fs.StringVar(&cfg.Addr, "relay", cfg.Addr, "relay ingest address host:port")
	fs.IntVar(&cfg.BufferBytes, "buffer-size", cfg.BufferBytes, "bytes of unacknowledged batches kept (encoded) for resending, resident from the start; the oldest are dropped (and counted) beyond it")
	fs.StringVar(&cfg.TLS.Cert, "tls-cert", cfg.TLS.Cert, "client certificate file for mutual TLS to the relay")
	fs.StringVar(&cfg.TLS.Key, "tls-key", cfg.TLS.Key, "client key file for mutual TLS to the relay")
	fs.StringVar(&cfg.TLS.CA, "tls-ca", cfg.TLS.CA, "CA file verifying the relay (default: system roots)")
	fs.StringVar(&cfg.TLS.ServerName, "tls-server-name", cfg.TLS.ServerName, "name expected in the relay's certificate (default: host of --relay)")
	fs.BoolVar(&cfg.Insecure, "relay-insecure", cfg.Insecure, "talk to the relay in plaintext (no TLS)")
	if cfg.Compression == "" {
		cfg.Compression = DefaultCompression
	}
	fs.StringVar(&cfg.Compression, "relay-compression", cfg.Compression, "compression of the stream to the relay: zstd, gzip or none")
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	fs.DurationVar(&cfg.DrainTimeout, "shutdown-drain", cfg.DrainTimeout, "at shutdown, wait this long at most for the relay to acknowledge the buffered batches (what is left is logged as possibly lost)")
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.BootID == "" {
		c.BootID = randomID()
	}
	if c.BufferBytes <= 0 {
		c.BufferBytes = DefaultBufferBytes
	}
	if c.BatchRecords <= 0 {
		c.BatchRecords = DefaultBatchRecords
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.Kernel == "" {
		c.Kernel = version.KernelRelease()
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// entry is one sealed batch waiting for its Ack.
type entry struct {
	msg     []byte  // the StreamRequest carrying the batch
	reg     *region // msg's place in the arena; nil for a kept batch (on the heap)
	seq     uint64
	size    int
	records int
	// sentGen is the stream generation it was last sent on (0: never).
	sentGen uint64
	// keep marks lost-event batches, which are never dropped.
	keep bool
}

// Shipper streams records to the relay. Create it with New.
type Shipper struct {
	cfg   Config
	log   *slog.Logger
	conn  *grpc.ClientConn
	m     metrics
	arena *arena // guarded by mu

	wake chan struct{}

	mu        sync.Mutex
	heartbeat func() *ingestv1.Heartbeat
	cur       *ingestv1.Batch
	curN      int
	seq       uint64
	queue     []*entry // in sequence order
	bufBytes  int
	gen       uint64 // current stream generation; bumped when a stream ends
	connected bool
	// droppedInflight: dropped for space while in flight on stream gen;
	// counted lost unless their Ack arrives on that stream.
	droppedInflight map[uint64]int
	pendingLost     map[flowv1.LostEventSource]uint64
}

// New validates cfg and prepares the connection (nothing is dialed until Run).
// reg may be nil (no metrics registered).
func New(cfg Config, reg prometheus.Registerer) (*Shipper, error) {
	cfg.setDefaults()
	if cfg.NodeName == "" {
		return nil, errors.New("shipper: node name is required")
	}
	var creds credentials.TransportCredentials
	switch {
	case cfg.Insecure && cfg.TLS.Enabled():
		return nil, errors.New("shipper: --relay-insecure and TLS files are mutually exclusive")
	case cfg.Insecure:
		creds = insecure.NewCredentials()
	default:
		tc, err := tlsconfig.Client(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("shipper: relay TLS: %w", err)
		}
		creds = credentials.NewTLS(tc)
	}
	callOpts := []grpc.CallOption{grpc.MaxCallSendMsgSize(cfg.BufferBytes + (1 << 20)), grpc.MaxCallRecvMsgSize(1 << 20),
		// Sends the held batches' bytes as they are; other messages with
		// the generated marshaller.
		grpc.ForceCodecV2(vtcodec.Codec{})}
	switch cfg.Compression {
	case grpczstd.Name, gzip.Name:
		callOpts = append(callOpts, grpc.UseCompressor(cfg.Compression))
	case "none":
	default:
		return nil, fmt.Errorf("shipper: --relay-compression %q: want zstd, gzip or none", cfg.Compression)
	}
	conn, err := grpc.NewClient(cfg.Addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(callOpts...),
	)
	if err != nil {
		return nil, fmt.Errorf("shipper: relay address %q: %w", cfg.Addr, err)
	}
	ar, err := newArena(cfg.BufferBytes)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("shipper: --buffer-size: %w", err)
	}
	s := &Shipper{
		cfg:             cfg,
		arena:           ar,
		log:             cfg.Log.With("component", "shipper", "relay", cfg.Addr),
		conn:            conn,
		wake:            make(chan struct{}, 1),
		gen:             1,
		droppedInflight: map[uint64]int{},
		pendingLost:     map[flowv1.LostEventSource]uint64{},
	}
	s.m = newMetrics(reg, cfg.LostCounter)
	return s, nil
}

// BootID returns the boot id in use.
func (s *Shipper) BootID() string { return s.cfg.BootID }

// SetHeartbeat sets the function that fills heartbeats (features, counters).
func (s *Shipper) SetHeartbeat(fn func() *ingestv1.Heartbeat) {
	s.mu.Lock()
	s.heartbeat = fn
	s.mu.Unlock()
}

// Publish queues one record. It never waits for the network: the record joins
// the open batch, and a full buffer drops the oldest batches instead of
// blocking. The shipper owns r afterwards (it sets the node name, and the
// flow's uuid when the record has none). NodeStatus records are not shipped
// (heartbeats carry them).
func (s *Shipper) Publish(r *observerv1.GetFlowsResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		s.cur = &ingestv1.Batch{}
	}
	switch x := r.GetResponseTypes().(type) {
	case *observerv1.GetFlowsResponse_Flow:
		s.cur.Flows = append(s.cur.Flows, x.Flow)
	case *observerv1.GetFlowsResponse_Conntrack:
		s.cur.Conntrack = append(s.cur.Conntrack, x.Conntrack)
	case *observerv1.GetFlowsResponse_LostEvents:
		s.cur.LostEvents = append(s.cur.LostEvents, x.LostEvents)
	default:
		return
	}
	s.curN++
	if s.curN >= s.cfg.BatchRecords {
		s.sealLocked(false)
	}
}

// Flush closes the open batch now.
func (s *Shipper) Flush() {
	s.mu.Lock()
	s.sealLocked(false)
	s.mu.Unlock()
}

// Drain closes the open batch and waits until the relay has acknowledged
// every batch (or they were dropped and counted), at most wait. It returns
// what is still unacknowledged: a stopping agent loses it unless the relay
// stored it without its ack arriving.
func (s *Shipper) Drain(wait time.Duration) (batches, bytes int) {
	s.Flush()
	deadline := time.Now().Add(wait)
	for {
		batches, bytes = s.Stats()
		if batches == 0 || !time.Now().Before(deadline) {
			return batches, bytes
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stats reports unacknowledged batches and their bytes (open batch excluded).
func (s *Shipper) Stats() (batches, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue), s.bufBytes
}

func (s *Shipper) sealLocked(keep bool) {
	b := s.cur
	if b == nil || len(b.Flows)+len(b.Conntrack)+len(b.LostEvents) == 0 {
		return
	}
	s.cur, s.curN = nil, 0
	s.seq++
	b.NodeName, b.BootId, b.Sequence = s.cfg.NodeName, s.cfg.BootID, s.seq
	for i, f := range b.Flows {
		// The collector sets ids where it makes records (they are in
		// --output jsonl too); only a record without one gets it here.
		if f.Uuid == "" {
			f.Uuid = flowid.Derive(s.cfg.NodeName, s.cfg.BootID, s.seq, i)
		}
		if f.NodeName == "" {
			f.NodeName = s.cfg.NodeName
		}
	}
	for _, c := range b.Conntrack {
		if c.NodeName == "" {
			c.NodeName = s.cfg.NodeName
		}
	}
	for _, l := range b.LostEvents {
		if l.NodeName == "" {
			l.NodeName = s.cfg.NodeName
		}
	}
	records := len(b.Flows) + len(b.Conntrack) + len(b.LostEvents)
	req := &ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Batch{Batch: b}}
	e := &entry{seq: b.Sequence, records: records, keep: keep}
	var err error
	if keep {
		// Lost-event reports are a few hundred bytes and never dropped:
		// held on the heap, they can never block the arena.
		e.msg, err = req.MarshalVT()
	} else {
		e.reg, e.msg, err = s.placeLocked(req)
	}
	if err != nil {
		// Not expected from generated code; never silent all the same.
		s.log.Error("cannot encode batch; its records are lost", "sequence", b.Sequence, "records", records, "err", err)
		s.countLostLocked(flowv1.LostEventSource_BATCH_REJECTED, records)
		return
	}
	if e.msg == nil {
		s.countLostLocked(flowv1.LostEventSource_AGENT_BUFFER_OVERFLOW, records)
		return
	}
	e.size = len(e.msg)
	s.queue = append(s.queue, e)
	s.bufBytes += e.size
	s.m.bufferBytes.Set(float64(s.bufBytes))
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// placeLocked encodes req into the arena, dropping the oldest droppable
// batches (their records counted) until it fits. It returns nil bytes when
// the batch is larger than the whole buffer: that batch alone is lost.
func (s *Shipper) placeLocked(req *ingestv1.StreamRequest) (*region, []byte, error) {
	n := req.SizeVT()
	if n > s.arena.size() {
		return nil, nil, nil
	}
	for {
		if r, buf := s.arena.alloc(n); r != nil {
			if _, err := req.MarshalToSizedBufferVT(buf); err != nil {
				s.arena.free(r)
				return nil, nil, err
			}
			return r, buf, nil
		}
		if !s.dropOldestLocked() {
			// Only kept batches are left, and they are on the heap: the
			// arena is empty and n fits it, so this is not reached.
			return nil, nil, fmt.Errorf("buffer of %d bytes holds no droppable batch and has no room for %d", s.arena.size(), n)
		}
	}
}

// dropOldestLocked drops the oldest droppable batch, counting its records
// (a batch in flight on the current stream only if that stream ends without
// its Ack). False when there is none.
func (s *Shipper) dropOldestLocked() bool {
	for i, e := range s.queue {
		if e.keep {
			continue
		}
		s.queue = append(s.queue[:i], s.queue[i+1:]...)
		s.releaseLocked(e)
		if e.sentGen == s.gen && s.connected {
			s.droppedInflight[e.seq] = e.records
		} else {
			s.countLostLocked(flowv1.LostEventSource_AGENT_BUFFER_OVERFLOW, e.records)
		}
		return true
	}
	return false
}

// releaseLocked gives a batch's memory back once it left the queue.
func (s *Shipper) releaseLocked(e *entry) {
	s.bufBytes -= e.size
	s.m.bufferBytes.Set(float64(s.bufBytes))
	if e.reg != nil {
		s.arena.free(e.reg)
	}
	e.msg, e.reg = nil, nil
}

func (s *Shipper) countLostLocked(src flowv1.LostEventSource, n int) {
	if n == 0 {
		return
	}
	s.pendingLost[src] += uint64(n)
	cause := "buffer_overflow"
	if src == flowv1.LostEventSource_BATCH_REJECTED {
		cause = "batch_rejected"
	}
	s.m.lost.WithLabelValues(cause).Add(float64(n))
}

// Run keeps a stream to the relay until ctx ends, reconnecting with jittered
// exponential backoff.
func (s *Shipper) Run(ctx context.Context) error {
	defer s.conn.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { // flush timer: closes partial batches
		defer wg.Done()
		t := time.NewTicker(s.cfg.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.Flush()
			}
		}
	}()
	retry := backoff.Backoff{Min: 200 * time.Millisecond, Max: 30 * time.Second}
	for {
		start := time.Now()
		err := s.session(ctx)
		s.endSession()
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 30*time.Second {
			retry.Reset() // the stream was healthy for a while
		}
		s.log.Warn("relay stream ended; reconnecting", "err", err)
		if !retry.Wait(ctx) {
			return nil
		}
	}
}

func (s *Shipper) endSession() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connected = false
	s.m.connected.Set(0)
	for _, n := range s.droppedInflight {
		s.countLostLocked(flowv1.LostEventSource_AGENT_BUFFER_OVERFLOW, n)
	}
	clear(s.droppedInflight)
	s.gen++ // every unacked batch becomes unsent: resent from the oldest
}

func (s *Shipper) hello() *ingestv1.Hello {
	s.mu.Lock()
	hb := s.heartbeat
	s.mu.Unlock()
	h := &ingestv1.Hello{
		NodeName:     s.cfg.NodeName,
		BootId:       s.cfg.BootID,
		AgentVersion: version.Version,
		Kernel:       s.cfg.Kernel,
		StartedAt:    timestamppb.New(startedAt),
	}
	if hb != nil {
		if x := hb(); x != nil {
			h.Features = x.Features
		}
	}
	return h
}

var startedAt = time.Now()

func (s *Shipper) heartbeatMsg() *ingestv1.Heartbeat {
	s.mu.Lock()
	fn := s.heartbeat
	s.mu.Unlock()
	var hb *ingestv1.Heartbeat
	if fn != nil {
		hb = fn()
	}
	if hb == nil {
		hb = &ingestv1.Heartbeat{}
	}
	if hb.Time == nil {
		hb.Time = timestamppb.Now()
	}
	if hb.AgentVersion == "" {
		hb.AgentVersion = version.Version
	}
	return hb
}

// session runs one stream: Hello/Welcome, then sends batches and heartbeats
// while a receiver goroutine handles Acks and Nacks.
func (s *Shipper) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ingestv1.NewIngestServiceClient(s.conn).Stream(sctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	if err := stream.Send(&ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Hello{Hello: s.hello()}}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	welcomed := time.AfterFunc(30*time.Second, cancel)
	resp, err := stream.Recv()
	welcomed.Stop()
	if err != nil {
		return fmt.Errorf("wait for welcome: %w", err)
	}
	if resp.GetWelcome() == nil {
		return errors.New("relay did not answer hello with welcome")
	}
	s.mu.Lock()
	s.connected = true
	gen := s.gen
	s.mu.Unlock()
	s.m.connected.Set(1)
	s.log.Info("connected to relay", "relay_version", resp.GetWelcome().GetRelayVersion())

	errc := make(chan error, 1)
	go func() { errc <- s.receive(stream, gen) }()

	hb := time.NewTicker(s.cfg.HeartbeatInterval)
	defer hb.Stop()
	if err := stream.Send(&ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Heartbeat{Heartbeat: s.heartbeatMsg()}}); err != nil {
		return fmt.Errorf("send heartbeat: %w", err)
	}
	for {
		for _, e := range s.nextToSend(gen) {
			msg := s.sendCopy(e)
			if msg == nil {
				continue // dropped for space since, and counted
			}
			if err := stream.SendMsg(msg); err != nil {
				return fmt.Errorf("send batch %d: %w", e.seq, err)
			}
			s.m.sent.Inc()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case <-s.wake:
		case <-hb.C:
			if err := stream.Send(&ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Heartbeat{Heartbeat: s.heartbeatMsg()}}); err != nil {
				return fmt.Errorf("send heartbeat: %w", err)
			}
		}
	}
}

// nextToSend seals pending lost-event reports and returns the unsent batches
// that fit in the in-flight window, marking them sent on gen.
func (s *Shipper) nextToSend(gen uint64) []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pendingLost) > 0 {
		s.sealLocked(false) // keep records ahead of the report in order
		s.cur = &ingestv1.Batch{}
		for _, src := range []flowv1.LostEventSource{flowv1.LostEventSource_AGENT_BUFFER_OVERFLOW, flowv1.LostEventSource_BATCH_REJECTED} {
			n := s.pendingLost[src]
			if n == 0 {
				continue
			}
			detail := fmt.Sprintf("agent buffer full (--buffer-size %d bytes): oldest batches dropped", s.cfg.BufferBytes)
			if src == flowv1.LostEventSource_BATCH_REJECTED {
				detail = "relay rejected batches"
			}
			s.cur.LostEvents = append(s.cur.LostEvents, &flowv1.LostEvent{
				Source: src, NumEventsLost: n, NodeName: s.cfg.NodeName, Time: timestamppb.Now(), Detail: detail,
			})
		}
		clear(s.pendingLost)
		s.sealLocked(true)
	}
	inflight := 0
	var out []*entry
	for _, e := range s.queue {
		if e.sentGen == gen {
			inflight++
			continue
		}
		if inflight >= s.cfg.MaxInflight {
			break
		}
		e.sentGen = gen
		inflight++
		out = append(out, e)
	}
	return out
}

// sendCopy copies a batch's bytes, under the lock, into a buffer of gRPC's
// pool that gRPC frees once it has written them; nil when the batch has
// been dropped for space meanwhile (it never reached this stream, so its
// records are counted lost now, not when the stream ends). Why a copy: once the lock is released
// the batch may be dropped and its place in the arena taken by the next
// one, while gRPC may still be writing (or keeping for a retry) what it was
// given. One batch at a time, so the copies in hand stay one batch, not the
// in-flight window, after a reconnect resends the whole buffer.
func (s *Shipper) sendCopy(e *entry) mem.Buffer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.msg == nil {
		if n, ok := s.droppedInflight[e.seq]; ok {
			delete(s.droppedInflight, e.seq)
			s.countLostLocked(flowv1.LostEventSource_AGENT_BUFFER_OVERFLOW, n)
		}
		return nil
	}
	return mem.Copy(e.msg, mem.DefaultBufferPool())
}

func (s *Shipper) receive(stream ingestv1.IngestService_StreamClient, gen uint64) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		switch m := resp.GetMsg().(type) {
		case *ingestv1.StreamResponse_Ack:
			s.settle(gen, m.Ack.GetBootId(), m.Ack.GetSequence(), "")
		case *ingestv1.StreamResponse_Nack:
			s.log.Warn("relay rejected batch", "sequence", m.Nack.GetSequence(), "reason", m.Nack.GetReason())
			s.settle(gen, m.Nack.GetBootId(), m.Nack.GetSequence(), m.Nack.GetReason())
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// settle removes an acknowledged (reason "") or rejected batch.
func (s *Shipper) settle(gen uint64, boot string, seq uint64, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if boot != s.cfg.BootID || gen != s.gen {
		return
	}
	rejected := reason != ""
	if n, ok := s.droppedInflight[seq]; ok {
		delete(s.droppedInflight, seq)
		if rejected {
			s.countLostLocked(flowv1.LostEventSource_BATCH_REJECTED, n)
		} else {
			s.m.acked.Inc()
		}
		return
	}
	for i, e := range s.queue {
		if e.seq != seq {
			continue
		}
		s.queue = append(s.queue[:i], s.queue[i+1:]...)
		s.releaseLocked(e)
		if rejected {
			s.countLostLocked(flowv1.LostEventSource_BATCH_REJECTED, e.records)
		} else {
			s.m.acked.Inc()
		}
		return
	}
}

type metrics struct {
	connected, bufferBytes prometheus.Gauge
	sent, acked            prometheus.Counter
	lost                   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, lost *prometheus.CounterVec) metrics {
	m := metrics{
		connected:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "trawl_agent_relay_connected", Help: "1 while the stream to the relay is up."}),
		bufferBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "trawl_agent_buffer_bytes", Help: "Bytes of unacknowledged batches held."}),
		sent:        prometheus.NewCounter(prometheus.CounterOpts{Name: "trawl_agent_batches_sent_total", Help: "Batches sent to the relay, including resends."}),
		acked:       prometheus.NewCounter(prometheus.CounterOpts{Name: "trawl_agent_batches_acked_total", Help: "Batches acknowledged by the relay."}),
	}
	if lost == nil {
		lost = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_agent_lost_events_total", Help: "Records lost or suppressed, by cause."}, []string{"cause"})
		if reg != nil {
			if err := reg.Register(lost); err != nil {
				var are prometheus.AlreadyRegisteredError
				if errors.As(err, &are) {
					if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
						lost = existing
					}
				}
			}
		}
	}
	m.lost = lost
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connected, m.bufferBytes, m.sent, m.acked} {
			_ = reg.Register(c)
		}
	}
	// Expose both causes at zero so rules see them before the first loss.
	m.lost.WithLabelValues("buffer_overflow")
	m.lost.WithLabelValues("batch_rejected")
	return m
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
