package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This kernel has no sch_netem and no fq qdisc, so the bed brings its own
// impairment: packet loss from nftables' random numbers, and delay from a
// delay line of its own, a TUN device in the node namespace through which
// one pod's outgoing packets are routed and held.

// DelayLine holds every packet a pod sends for a fixed time before the node
// routes it on. Only that direction is delayed, so the pod's round trips
// grow by the delay.
type DelayLine struct {
	// Device is the TUN interface in the node namespace.
	Device string
	delay  time.Duration
	table  string
	pod    *Pod
	node   *Netns
	tun    *os.File
	queue  chan held
	wg     sync.WaitGroup
	// Packets counts the packets the line carried; Overflows those it
	// dropped because its queue was full (a test reads both).
	Packets, Overflows atomic.Uint64
	closed             atomic.Bool

	mu    sync.Mutex
	holds []time.Duration // how long each carried packet was held, up to maxHolds
}

type held struct {
	in  time.Time // when the line read it
	due time.Time
	pkt []byte
}

// maxHolds bounds the hold times kept: a median needs a sample, not all.
const maxHolds = 100000

// queueLen bounds the packets in flight: enough for 20 ms of a fast TCP
// stream on a veth, small enough that a runaway sender cannot grow memory.
const queueLen = 8192

// Delay routes everything pod sends through a new delay line that holds
// each packet for d. Close removes it.
func (b *Bed) Delay(ctx context.Context, pod *Pod, d time.Duration) (*DelayLine, error) {
	i := b.podIndex(pod)
	if i < 0 {
		return nil, fmt.Errorf("testbed: delay: pod %q is not in bed %s", pod.PodName, b.ID)
	}
	if d <= 0 {
		return nil, fmt.Errorf("testbed: delay %v: must be positive", d)
	}
	l := &DelayLine{
		Device: fmt.Sprintf("dl%s%d", b.ID, i),
		delay:  d,
		table:  strconv.Itoa(100 + i),
		pod:    pod,
		node:   b.Node,
		queue:  make(chan held, queueLen),
	}
	if err := b.Node.Do(func() error {
		var err error
		l.tun, err = openTUN(l.Device)
		return err
	}); err != nil {
		return nil, fmt.Errorf("testbed: delay line for %s: %w", pod.PodName, err)
	}
	node := b.Node.Name
	// Packets from the pod's veth take the delay line's table; what the
	// line writes back arrives on the TUN device and takes the main table.
	// The TUN device has no address, so reverse-path filtering must not
	// judge the packets it returns.
	err := runAll(ctx, [][]string{
		{"ip", "-n", node, "link", "set", l.Device, "up"},
		{"ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.conf." + l.Device + ".rp_filter=0", "net.ipv4.conf.all.rp_filter=0"},
		{"ip", "-n", node, "route", "add", "default", "dev", l.Device, "table", l.table},
		{"ip", "-n", node, "rule", "add", "iif", pod.HostVeth, "lookup", l.table, "pref", l.table},
	})
	if err != nil {
		l.tun.Close()
		return nil, fmt.Errorf("testbed: delay line for %s: %w", pod.PodName, err)
	}
	l.wg.Add(2)
	go l.read()
	go l.write()
	return l, nil
}

// read takes packets off the TUN device as the kernel routes them in.
func (l *DelayLine) read() {
	defer l.wg.Done()
	defer close(l.queue)
	buf := make([]byte, 65536)
	for {
		n, err := l.tun.Read(buf)
		if err != nil {
			return // closed
		}
		pkt := append([]byte(nil), buf[:n]...)
		select {
		case l.queue <- held{in: time.Now(), due: time.Now().Add(l.delay), pkt: pkt}:
		default:
			l.Overflows.Add(1)
		}
	}
}

// write sends each packet back once its time is up. The delay is the same
// for every packet, so the queue is already in release order.
func (l *DelayLine) write() {
	defer l.wg.Done()
	for h := range l.queue {
		if wait := time.Until(h.due); wait > 0 {
			time.Sleep(wait)
		}
		if l.closed.Load() {
			continue
		}
		if _, err := l.tun.Write(h.pkt); err == nil {
			l.Packets.Add(1)
			l.mu.Lock()
			if len(l.holds) < maxHolds {
				l.holds = append(l.holds, time.Since(h.in))
			}
			l.mu.Unlock()
		}
	}
}

// MedianHold is the median time the line actually held the packets it
// carried: the delay asked for plus this process's lateness in writing them
// back, which a loaded machine makes a millisecond or more. A test that
// compares round trips with the delay compares them with this (zero before
// any packet was carried).
func (l *DelayLine) MedianHold() time.Duration {
	l.mu.Lock()
	h := append([]time.Duration(nil), l.holds...)
	l.mu.Unlock()
	if len(h) == 0 {
		return 0
	}
	slices.Sort(h)
	return h[len(h)/2]
}

// Close removes the routing and the device. Packets still held are lost,
// as on a link taken down.
func (l *DelayLine) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if _, err := l.node.Run(ctx, "ip", "rule", "del", "iif", l.pod.HostVeth, "lookup", l.table); err != nil {
		errs = append(errs, err)
	}
	// Closing the file descriptor deletes the (non-persistent) device and
	// its routes, and ends read.
	errs = append(errs, l.tun.Close())
	l.wg.Wait()
	return errors.Join(errs...)
}

// openTUN creates a TUN device (no packet information header) in the
// calling thread's network namespace.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); errno != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, errno)
	}
	// Non-blocking, so that os.NewFile hands it to the runtime's poller and
	// Close interrupts a Read in progress.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// Loss drops the given percentage of the packets pod sends, at random, with
// an nftables rule in the node namespace (numgen random). The kernel counts
// these as NETFILTER_DROP drops: unlike loss on a wire, the node sees them.
// The returned function removes the rule.
func (b *Bed) Loss(ctx context.Context, pod *Pod, percent int) (remove func() error, err error) {
	if b.podIndex(pod) < 0 {
		return nil, fmt.Errorf("testbed: loss: pod %q is not in bed %s", pod.PodName, b.ID)
	}
	if percent <= 0 || percent >= 100 {
		return nil, fmt.Errorf("testbed: loss %d%%: want 1-99", percent)
	}
	table := "trawl_loss_" + pod.PodName
	rules := fmt.Sprintf(`table inet %s {
	chain prerouting {
		type filter hook prerouting priority -300; policy accept;
		iifname %q numgen random mod 100 < %d drop
	}
}
`, table, pod.HostVeth, percent)
	cmd := b.Node.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testbed: loss for %s: nft: %v: %s", pod.PodName, err, out)
	}
	return func() error {
		_, err := b.Node.Run(context.Background(), "nft", "delete", "table", "inet", table)
		return err
	}, nil
}

func (b *Bed) podIndex(pod *Pod) int {
	for i, p := range b.Pods {
		if p == pod {
			return i
		}
	}
	return -1
}
