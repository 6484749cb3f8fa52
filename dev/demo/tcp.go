package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trawl-dev/trawl/internal/testbed"
)

// The TCP health story (docs/tcp-health.md; deploy/demo/README.md).
const (
	// SlowApp's pod has a slow link: every packet it sends is held for
	// SlowLinkDelay by the test bed's delay line, so its clients'
	// handshakes (payment-service -> postgres) take that much longer.
	SlowLinkApp   = AppPostgres
	SlowLinkDelay = 20 * time.Millisecond

	// DarkApp calls DarkAddr:DarkPort, a partner endpoint outside the
	// cluster whose route leads nowhere: the SYNs leave the node and no
	// answer ever comes (a connect timeout, not a drop).
	DarkApp  = AppGateway
	DarkPort = 443
)

// DarkAddr is the blackholed partner address (TEST-NET-3).
var DarkAddr = netip.MustParseAddr("203.0.113.50")

// Connect is one TCP connection attempt of the story as the client saw it.
type Connect struct {
	From, To string // "namespace/pod"; To is the address for DarkAddr
	Port     int
	At       time.Time
	// Handshake is how long the client's connect took (SYN sent to
	// SYN-ACK received), for connections that were established.
	Handshake time.Duration
	Err       error
}

// maxTCPLog bounds the connection attempts a stack remembers.
const maxTCPLog = 20000

// startTCPStory puts the slow link on SlowLinkApp's pod and routes
// DarkAddr into a black hole in the node namespace.
func (s *Stack) startTCPStory(ctx context.Context) error {
	slow := s.PodByApp(SlowLinkApp)
	if slow == nil {
		return fmt.Errorf("demo manifests have no %s pod", SlowLinkApp)
	}
	line, err := s.Bed.Delay(ctx, slow.Netns, SlowLinkDelay)
	if err != nil {
		return err
	}
	s.cleanup = append(s.cleanup, line.Close)
	s.logf("slow link: every packet %s sends is held %s", ID(slow), SlowLinkDelay)
	hole, err := openBlackHole(ctx, s.Bed, netip.PrefixFrom(DarkAddr, 32))
	if err != nil {
		return err
	}
	s.cleanup = append(s.cleanup, hole.Close)
	s.logf("black hole: %s is routed into %s in the node namespace, which answers nothing", DarkAddr, hole.name)
	return nil
}

// blackHole is a TUN device in the node namespace that swallows what is
// routed into it: user space reads and discards the packets, so no kernel
// on the machine drops them (the agent's drop program would see that) and
// the sender waits for an answer that never comes, as behind a dead route.
type blackHole struct {
	name string
	tun  *os.File
	done chan struct{}
}

func openBlackHole(ctx context.Context, bed *testbed.Bed, dst netip.Prefix) (*blackHole, error) {
	h := &blackHole{name: "bh" + bed.ID, done: make(chan struct{})}
	if err := bed.Node.Do(func() error {
		var err error
		h.tun, err = tunDevice(h.name)
		return err
	}); err != nil {
		return nil, fmt.Errorf("black hole: %w", err)
	}
	for _, args := range [][]string{
		{"-n", bed.Node.Name, "link", "set", h.name, "up"},
		{"-n", bed.Node.Name, "route", "add", dst.String(), "dev", h.name},
	} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			h.tun.Close()
			return nil, fmt.Errorf("black hole: ip %v: %v: %s", args, err, out)
		}
	}
	go func() {
		defer close(h.done)
		buf := make([]byte, 65536)
		for {
			if _, err := h.tun.Read(buf); err != nil {
				return
			}
		}
	}()
	return h, nil
}

// Close removes the device and with it the route.
func (h *blackHole) Close() error {
	err := h.tun.Close()
	<-h.done
	return err
}

// tunDevice creates a TUN device without packet information in the calling
// thread's network namespace; it lives as long as the file.
func tunDevice(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	// Non-blocking: the runtime's poller serves it, so Close ends a Read.
	return os.NewFile(uintptr(fd), "tun:"+name), nil
}

// connectTCP dials from a pod, records the attempt with the client's
// handshake time, writes one request line and reads the reply.
func (s *Stack) connectTCP(ctx context.Context, from *Pod, to string, addr netip.Addr, port int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	c, err := from.Netns.Dial(ctx, "tcp", net.JoinHostPort(addr.String(), strconv.Itoa(port)))
	conn := Connect{From: ID(from), To: to, Port: port, At: start, Err: err}
	if err == nil {
		conn.Handshake = time.Since(start)
	}
	s.recordTCP(conn)
	if err != nil {
		return err
	}
	defer c.Close()
	return requestReply(c, timeout)
}

func (s *Stack) recordTCP(c Connect) {
	s.tcpMu.Lock()
	defer s.tcpMu.Unlock()
	s.tcpLog = append(s.tcpLog, c)
	if n := len(s.tcpLog) - maxTCPLog; n > 0 {
		s.tcpLog = append(s.tcpLog[:0:0], s.tcpLog[n:]...)
	}
}

// TCPConnects returns every TCP connection attempt of the story's rounds
// (oldest first) with what the client measured.
func (s *Stack) TCPConnects() []Connect {
	s.tcpMu.Lock()
	defer s.tcpMu.Unlock()
	return slices.Clone(s.tcpLog)
}

// LossFor drops percent of the packets app's pod sends for d (the test
// bed's nftables loss: the node's kernel drops them, so they are also DROP
// records), then removes the rule. Its peers' sockets retransmit.
func (s *Stack) LossFor(ctx context.Context, app string, percent int, d time.Duration) error {
	p := s.PodByApp(app)
	if p == nil {
		return fmt.Errorf("demo manifests have no %s pod", app)
	}
	remove, err := s.Bed.Loss(ctx, p.Netns, percent)
	if err != nil {
		return err
	}
	s.logf("lossy link: %d %% of what %s sends is dropped for %s", percent, ID(p), d)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	return errors.Join(remove(), ctx.Err())
}
