// Command relay-bench measures Trawl's ClickHouse write path and queries:
// a raw clickhouse-go columnar insert of N realistic flows (the baseline),
// the same rows through relay/store's Writer and, with -relay, through the
// real trawl-relay process fed by synthetic agents over gRPC; bytes per
// stored flow after OPTIMIZE FINAL; query latency on a large data set.
// bench/relay.sh runs it; results go to docs/benchmarks/relay.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/dev/benchdata"
	"github.com/trawl-dev/trawl/dev/chserver"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

var (
	nFlows      = flag.Int("flows", 1_000_000, "flows per insert run")
	runs        = flag.Int("runs", 3, "runs of each insert path (medians reported)")
	relayBin    = flag.String("relay", "", "path of trawl-relay: also measure agents → gRPC → relay → ClickHouse; several paths separated by commas (a before and an after build) are measured in turn in every run, against the same raw baseline, their order alternating")
	agents      = flag.Int("agents", 4, "synthetic agents for the gRPC path: one per node of the data set, which has 4")
	queryFlows  = flag.Int("query-flows", 50_000_000, "flows in the query data set (0: skip queries)")
	queryRuns   = flag.Int("query-runs", 5, "runs of each query (median reported)")
	insertBlock = flag.Int("block", 50_000, "rows per insert (baseline and writer)")
	cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the writer runs to this file")
	keep        = flag.Bool("keep", false, "keep the query data set (database -query-db) and reuse it when its size matches, and the last writer run's database")
	queryDB     = flag.String("query-db", "bench_query", "database of the query data set (with -keep, two builds can each keep theirs on one server and be timed in turns)")
	hubbleRuns  = flag.Int("hubble", 0, "on the query data set: also time GetFlows number 20 on Trawl's API and Hubble's, interleaved, this many runs each (issue 12)")
	dataDir     = flag.String("data-dir", "", "data directory of the embedded ClickHouse (kept; with -keep the query data set survives between runs)")
	serverPID   = flag.Int("server-pid", 0, "with TRAWL_CLICKHOUSE_DSN: the ClickHouse server's process, whose CPU each insert path is charged (the embedded server's is known)")
	settle      = flag.Duration("settle", 30*time.Second, "after each insert path, wait up to this long for its database's merges to end, charging their CPU to the path (0: do not wait)")
	span        = flag.String("span", "1h", "time span of the insert data set's flows, before now: a duration, or \"live\" for -flows / 150,000 s, as dense in time as a cluster at 150k flows/s makes them (the rollups aggregate what shares a minute)")
	compress    = flag.String("compress", "", "compression on the wire to ClickHouse for every insert path (baseline, writer, relays): the DSN's compress parameter, e.g. lz4 (empty: none, the relay's default)")
	relayArgs   = flag.String("relay-args", "", "more flags for every trawl-relay, separated by spaces (e.g. \"--insert-queue-bytes 67108864\")")
)

// liveRate is the flow rate -span live stands for: issue 15's goal.
const liveRate = 150_000

// dataSpan is -span as a duration.
func dataSpan(n int) (time.Duration, error) {
	if *span == "live" {
		return time.Duration(float64(n) / liveRate * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(*span)
	if err != nil {
		return 0, fmt.Errorf("-span %q: neither \"live\" nor a duration: %w", *span, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("-span %q: not positive", *span)
	}
	return d, nil
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	sp, err := dataSpan(*nFlows)
	if err != nil {
		log.Fatalf("bench-relay: %v", err)
	}
	if *relayBin != "" && *agents != benchdata.Nodes {
		log.Fatalf("bench-relay: -agents %d: the data set's flows come from %d nodes and each agent sends one node's batches, so -agents must be %d", *agents, benchdata.Nodes, benchdata.Nodes)
	}
	ctx := context.Background()
	dsn := os.Getenv("TRAWL_CLICKHOUSE_DSN")
	var srv *chserver.Server
	if dsn == "" {
		if srv, err = chserver.Start(ctx, chserver.Config{DataDir: *dataDir}); err != nil {
			log.Fatalf("start embedded ClickHouse: %v", err)
		}
		defer srv.Stop()
		dsn = "clickhouse://" + srv.Addr
		*serverPID = srv.PID()
	}
	conn := open(dsn)
	var version string
	_ = conn.QueryRow(ctx, "SELECT version()").Scan(&version)
	log.Printf("ClickHouse %s; generating %d flows over %s…", version, *nFlows, sp)
	end := time.Now().Truncate(time.Minute)
	batches := benchdata.GenerateSpan(*nFlows, end, sp)
	if *runs == 0 {
		queries(ctx, dsn, conn, end)
		return
	}
	fmt.Printf("## Insert: %d flows over %s (-span %s), %d runs, %d-row inserts\n\n", *nFlows, sp, *span, *runs, *insertBlock)
	if *relayArgs != "" {
		fmt.Printf("Relay flags added: %s\n\n", *relayArgs)
	}
	fmt.Printf("ClickHouse idle, before the runs: %.3f CPU s per s\n\n", idleServerCPU(5*time.Second))
	if *relayBin != "" {
		probe := openStore(ctx, dsn, "bench_probe")
		fmt.Printf("ClickHouse CPU per poll of the stored count (empty table): %.2f ms\n\n", 1000*countQueryCPU(ctx, conn, probe.Database()))
		probe.Close()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS bench_probe SYNC")
	}
	fmt.Printf("| run | raw clickhouse-go rows/s | store Writer rows/s | writer/raw | ClickHouse CPU s per 1M: raw | Writer |%s\n", relayHeader())
	fmt.Printf("|---|---|---|---|---|---|%s\n", relayRule())
	var raws, writers, ratios []float64
	relayBins := strings.Split(*relayBin, ",")
	if *relayBin == "" {
		relayBins = nil
	}
	relays, relayRatios, relayCPU, relayRSS := make([][]float64, len(relayBins)), make([][]float64, len(relayBins)), make([][]float64, len(relayBins)), make([][]float64, len(relayBins))
	relayCPU2, relayFaults := make([][]float64, len(relayBins)), make([][]float64, len(relayBins))
	relayServer, relayAgents := make([][]float64, len(relayBins)), make([][]float64, len(relayBins))
	var rawServer, writerServer []float64
	var lastDB string
	for r := 1; r <= *runs; r++ {
		// Alternate which path goes first: the machine is shared and noisy,
		// and the server merges the previous insert's parts for a while.
		var raw, wr, rawCH, wrCH float64
		var wdb string
		rawDB := fmt.Sprintf("bench_raw_%d", r)
		doRaw := func() {
			openStore(ctx, dsn, rawDB).Close()
			rawCH = serverCost(ctx, conn, rawDB, func() { raw = runRaw(ctx, conn, rawDB, batches) })
			_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+rawDB+" SYNC")
		}
		doWriter := func() {
			s := openStore(ctx, dsn, fmt.Sprintf("bench_writer_%d", r))
			defer s.Close()
			wrCH = serverCost(ctx, conn, s.Database(), func() { wr, wdb = runWriter(ctx, s, batches) })
		}
		if r%2 == 1 {
			doRaw()
			doWriter()
		} else {
			doWriter()
			doRaw()
		}
		lastDB = wdb
		raws, writers, ratios = append(raws, raw), append(writers, wr), append(ratios, wr/raw)
		rawServer, writerServer = append(rawServer, rawCH), append(writerServer, wrCH)
		line := fmt.Sprintf("| %d | %.0f | %.0f | %.2f | %s | %s |", r, raw, wr, wr/raw, cpuCell(rawCH), cpuCell(wrCH))
		lines := make([]string, len(relayBins))
		for k := range relayBins {
			i := k
			if r%2 == 0 {
				i = len(relayBins) - 1 - k
			}
			db := fmt.Sprintf("bench_relay_%d_%d", r, i)
			var m relayRun
			chCPU := serverCost(ctx, conn, db, func() { m = runRelay(ctx, relayBins[i], dsn, conn, db, batches) })
			_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC")
			relays[i], relayRatios[i] = append(relays[i], m.rate), append(relayRatios[i], m.rate/raw)
			relayCPU[i], relayRSS[i] = append(relayCPU[i], m.cpuPerM), append(relayRSS[i], m.rssMiB)
			relayCPU2[i], relayFaults[i] = append(relayCPU2[i], m.cpuPerM2), append(relayFaults[i], m.faults)
			relayServer[i], relayAgents[i] = append(relayServer[i], chCPU), append(relayAgents[i], m.agentCPU)
			lines[i] = fmt.Sprintf("%s %s | %.0f | %.2f | %.2f | %.2f | %.0f | %.0f | %s | %.2f |", line, relayName(relayBins, i), m.rate, m.rate/raw, m.cpuPerM, m.cpuPerM2, m.faults, m.rssMiB, cpuCell(chCPU), m.agentCPU)
		}
		if len(lines) == 0 {
			lines = []string{line}
		}
		for _, l := range lines {
			fmt.Println(l)
		}
		if r < *runs {
			_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+wdb+" SYNC")
		}
	}
	line := fmt.Sprintf("| **median** | %.0f | %.0f | **%.2f** | %s | %s |", median(raws), median(writers), median(ratios), cpuCell(median(rawServer)), cpuCell(median(writerServer)))
	for i := range relayBins {
		fmt.Printf("%s %s | %.0f | **%.2f** | %.2f | %.2f | %.0f | %.0f | %s | %.2f |\n", line, relayName(relayBins, i), median(relays[i]), median(relayRatios[i]), median(relayCPU[i]), median(relayCPU2[i]), median(relayFaults[i]), median(relayRSS[i]), cpuCell(median(relayServer[i])), median(relayAgents[i]))
	}
	if len(relayBins) == 0 {
		fmt.Println(line)
	}
	fmt.Printf("\nStore Writer client CPU (encode + clickhouse-go), median: %.2f s per 1M flows\n\n", median(writerCPU))
	storage(ctx, conn, lastDB)
	if !*keep {
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+lastDB+" SYNC")
	}
	if *queryFlows > 0 {
		queries(ctx, dsn, conn, end)
	}
}

func relayHeader() string {
	if *relayBin == "" {
		return ""
	}
	return " relay | agents→gRPC→relay rows/s | relay/raw | relay CPU s per 1M flows | relay CPU s per 1M, middle half | relay page faults | relay peak RSS MiB | ClickHouse CPU s per 1M: relay | agents CPU s per 1M (bench process) |"
}

// relayName is how a relay binary is shown: its base name, and its position
// when several share one.
func relayName(bins []string, i int) string {
	name := filepath.Base(bins[i])
	for j, b := range bins {
		if j != i && filepath.Base(b) == name {
			return fmt.Sprintf("%s (%d)", name, i+1)
		}
	}
	return name
}

func relayRule() string {
	if *relayBin == "" {
		return ""
	}
	return "---|---|---|---|---|---|---|---|---|"
}

// withCompress adds -compress to a DSN that has no parameters.
func withCompress(dsn string) string {
	if *compress == "" {
		return dsn
	}
	return dsn + "?compress=" + *compress
}

func open(dsn string) driver.Conn {
	opts, err := clickhouse.ParseDSN(withCompress(dsn))
	if err != nil {
		log.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		log.Fatal(err)
	}
	return conn
}

func openStore(ctx context.Context, dsn, db string) *store.Store {
	s, err := store.Open(ctx, store.Config{DSN: withCompress(dsn), Database: db, BatchRows: *insertBlock, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	return s
}

// runRaw: columns built before timing, then sequential columnar inserts of
// insertBlock rows into the same schema (materialized views included).
func runRaw(ctx context.Context, conn driver.Conn, db string, batches []batch) float64 {
	// The writer's settings that shape ClickHouse's work, so that the raw
	// insert costs the server what the writer's does.
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(store.InsertWorkSettings()))
	var chunks []*store.Columns
	cur := &store.Columns{}
	for _, b := range batches {
		for _, f := range b.Flows {
			cur.Add(f)
		}
		if cur.Len() >= *insertBlock {
			chunks = append(chunks, cur)
			cur = &store.Columns{}
		}
	}
	if cur.Len() > 0 {
		chunks = append(chunks, cur)
	}
	q := "INSERT INTO " + db + ".flows (" + strings.Join(store.FlowColumnNames(), ", ") + ")"
	start := time.Now()
	rows := 0
	for _, c := range chunks {
		b, err := conn.PrepareBatch(ctx, q)
		if err != nil {
			log.Fatal(err)
		}
		for i, v := range c.Values() {
			if err := b.Column(i).Append(v); err != nil {
				log.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			log.Fatal(err)
		}
		rows += c.Len()
	}
	return float64(rows) / time.Since(start).Seconds()
}

// runWriter: agent-sized batches (1000 flows) enqueued as fast as the
// writer takes them; timed until the last one is acknowledged.
func runWriter(ctx context.Context, s *store.Store, batches []batch) (float64, string) {
	w := s.NewWriter(nil)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	var wg sync.WaitGroup
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	cpu0 := selfCPU()
	start := time.Now()
	rows := 0
	for _, b := range batches {
		wg.Add(1)
		rows += len(b.Flows)
		w.Enqueue(storeBatch(b), func(err error) {
			if err != nil {
				log.Fatalf("writer: %v", err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	el := time.Since(start)
	writerCPU = append(writerCPU, (selfCPU()-cpu0)/(float64(rows)/1e6))
	cancel()
	<-done
	return float64(rows) / el.Seconds(), s.Database()
}

// writerCPU is the bench process's CPU seconds per 1M flows in each writer
// run: enqueue, encoding and the clickhouse-go client, i.e. the store's
// share of a relay's CPU.
var writerCPU []float64

func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// procStat returns CPU seconds and peak RSS (MiB) of a process.
func procStat(pid int) (cpu, rssMiB float64) {
	cpu, _ = procCPU(pid)
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err == nil {
		for _, l := range strings.Split(string(s), "\n") {
			if strings.HasPrefix(l, "VmHWM:") {
				kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
				rssMiB = kb / 1024
			}
		}
	}
	return cpu, rssMiB
}

// procCPU returns CPU seconds and minor page faults of a process. The
// faults are where a young relay spends a good part of its first seconds:
// every page its heap grows into is zeroed by the kernel when first
// touched, which on these guests costs several microseconds per page.
func procCPU(pid int) (cpu, minorFaults float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		minorFaults, _ = strconv.ParseFloat(f[7], 64)
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cpu = (ut + st) / 100 // USER_HZ
	}
	return cpu, minorFaults
}

// relayRun is what one run of a relay measured.
type relayRun struct {
	rate     float64 // flows stored per second, start to end
	cpuPerM  float64 // relay CPU s per 1M flows, start to end
	cpuPerM2 float64 // the same between a quarter and three quarters of the flows stored
	faults   float64 // the relay's minor page faults, start to end
	rssMiB   float64 // peak RSS
	agentCPU float64 // the bench process's CPU s per 1M flows, start to end: the agents' shipping, and polling the count
}

// runRelay: the real trawl-relay process, fed by synthetic agents (the
// agent's own shipper) over gRPC; timed until every flow is in ClickHouse.
//
// Besides the whole run it measures the middle half on its own, from the
// moment a quarter of the flows are stored to the moment three quarters
// are: a relay's first seconds grow its heap from nothing (page faults),
// fill its caches and create its metric series, paid once per process, not
// per flow at full ingest; and the last inserts of a run leave the relay
// waiting. Between the two marks it holds about as many flows not yet
// stored at each, so their CPU is charged fairly.
func runRelay(ctx context.Context, bin, dsn string, conn driver.Conn, db string, batches []batch) relayRun {
	ingest := freeAddr()
	cmd := exec.Command(bin, "--clickhouse-dsn", withCompress(strings.TrimRight(dsn, "/")+"/"+db), "--insecure",
		"--ingest-address", ingest, "--listen-address", freeAddr(), "--metrics-address", "", "--insert-batch-rows", strconv.Itoa(*insertBlock))
	cmd.Args = append(cmd.Args, strings.Fields(*relayArgs)...)
	cmd.Stderr, cmd.Stdout = os.Stderr, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		log.Fatalf("start relay: %v", err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", ingest, 100*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if i > 300 {
			log.Fatalf("relay did not listen on %s", ingest)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ships := make([]*shipper.Shipper, *agents)
	var wg sync.WaitGroup
	for i := range ships {
		sh, err := shipper.New(shipper.Config{Addr: ingest, NodeName: fmt.Sprintf("node-%d", i), BootID: fmt.Sprintf("boot-%d", i),
			Insecure: true, BufferBytes: 1 << 30, FlushInterval: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}, nil)
		if err != nil {
			log.Fatal(err)
		}
		ships[i] = sh
		wg.Add(1)
		go func() { defer wg.Done(); _ = sh.Run(sctx) }()
	}
	pid := cmd.Process.Pid
	cpu0, faults0 := procCPU(pid)
	self0 := selfCPU()
	start := time.Now()
	total := 0
	var pubWG sync.WaitGroup
	for i, sh := range ships {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for j := i; j < len(batches); j += len(ships) {
				for _, f := range batches[j].Flows {
					sh.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}})
				}
				// Stay below the agent buffer: never let it drop.
				for {
					n, _ := sh.Stats()
					if n < 64 {
						break
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
			sh.Flush()
		}()
	}
	for _, b := range batches {
		total += len(b.Flows)
	}
	var q1, q3 uint64 // flows stored at the two marks
	var cpuQ1, cpuQ3 float64
	polls := 0
	defer func() { log.Printf("%s: %d polls of the stored count", db, polls) }()
	for {
		polls++
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".flows").Scan(&n); err != nil {
			log.Fatal(err)
		}
		if q1 == 0 && n >= uint64(total)/4 {
			q1 = n
			cpuQ1, _ = procCPU(pid)
		}
		if q3 == 0 && n >= uint64(total)*3/4 {
			q3 = n
			cpuQ3, _ = procCPU(pid)
		}
		if n >= uint64(total) {
			break
		}
		if q3 == 0 {
			time.Sleep(50 * time.Millisecond) // inserts land every half second or so: fine enough, and less load on the server
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	pubWG.Wait()
	el := time.Since(start)
	cpu1, faults1 := procCPU(pid)
	self1 := selfCPU()
	_, peak := procStat(pid)
	cancel()
	wg.Wait()
	cpuPerM2 := math.NaN() // both marks came with one insert: nothing between them to measure
	if mid := q3 - q1; mid > 0 {
		cpuPerM2 = (cpuQ3 - cpuQ1) / (float64(mid) / 1e6)
	}
	return relayRun{
		rate:     float64(total) / el.Seconds(),
		cpuPerM:  (cpu1 - cpu0) / (float64(total) / 1e6),
		cpuPerM2: cpuPerM2,
		faults:   faults1 - faults0,
		rssMiB:   peak,
		agentCPU: (self1 - self0) / (float64(total) / 1e6),
	}
}

func storage(ctx context.Context, conn driver.Conn, db string) {
	rollupRows(ctx, conn, db)
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+".flows FINAL"); err != nil {
		log.Printf("optimize: %v", err)
	}
	var rows, comp, raw uint64
	if err := conn.QueryRow(ctx, "SELECT sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.parts WHERE active AND database = ? AND table = 'flows'", db).Scan(&rows, &comp, &raw); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("## Storage after OPTIMIZE FINAL (%d flows)\n\n", rows)
	fmt.Printf("**%.1f B per flow compressed** (%.1f B uncompressed, ratio %.1f×)\n\n", float64(comp)/float64(rows), float64(raw)/float64(rows), float64(raw)/float64(comp))
	// Every column that stores more than a hundredth of a byte per flow: the
	// table to attack first (issue 15 part 4).
	r, err := conn.Query(ctx, "SELECT name, data_compressed_bytes FROM system.columns WHERE database = ? AND table = 'flows' AND data_compressed_bytes * 100 >= ? ORDER BY data_compressed_bytes DESC", db, rows)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	fmt.Println("| column | B/flow |\n|---|---|")
	for r.Next() {
		var name string
		var b uint64
		_ = r.Scan(&name, &b)
		fmt.Printf("| %s | %.2f |\n", name, float64(b)/float64(rows))
	}
	fmt.Println()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// rollupRows prints each table's rows per flow as the writer's run left them
// (merges settled or not, before any OPTIMIZE): how much the rollups
// aggregated, which is what the data set's time density decides.
func rollupRows(ctx context.Context, conn driver.Conn, db string) {
	var flows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".flows").Scan(&flows); err != nil || flows == 0 {
		log.Printf("rollup rows: count flows: %v", err)
		return
	}
	r, err := conn.Query(ctx, "SELECT table, sum(rows) FROM system.parts WHERE active AND database = ? AND table != 'flows' GROUP BY table ORDER BY table", db)
	if err != nil {
		log.Printf("rollup rows: %v", err)
		return
	}
	defer r.Close()
	fmt.Printf("## Rows per flow in the other tables, as the writer run left them (%d flows)\n\n| table | rows per flow |\n|---|---|\n", flows)
	for r.Next() {
		var name string
		var n uint64
		_ = r.Scan(&name, &n)
		fmt.Printf("| %s | %.3f |\n", name, float64(n)/float64(flows))
	}
	fmt.Println()
}
