package chserver

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FreePort returns a free loopback TCP port below the kernel's ephemeral
// range (ip_local_port_range), where neither a listener on port 0 nor an
// outgoing connection is ever given one.
//
// Why not port 0: a server restarted on its port (a test's outage, a soak's
// shard stop) leaves that port free while it is down, and in the
// ephemeral range any of the listeners other tests open on port 0 in the
// meantime may be given it. The restarted server then cannot bind and
// exits, and its clients talk to the wrong process for the rest of the
// test (CI saw a writer retry for ten minutes). Below the range only
// another explicit pick can collide: one in thousands of ports.
func FreePort() (int, error) {
	lo, hi := ephemeralRange()
	from, to := 10000, lo // [from, to)
	if to-from < 1000 {
		// The ephemeral range starts low: above it, if there is room.
		from, to = hi+1, 65536
	}
	if to-from < 1000 {
		return portZero()
	}
	for range 100 {
		p := from + rand.IntN(to-from)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("find a free port in %d-%d: 100 tries taken", from, to-1)
}

// ephemeralRange is the kernel's range for port 0 and outgoing connections,
// Linux's default when it cannot be read.
func ephemeralRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l <= h {
				return l, h
			}
		}
	}
	return 32768, 60999
}

func portZero() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// listening reports whether process pid listens on every one of addrs
// (host:port, TCP): its sockets (/proc/PID/fd) against the listening
// sockets of its network namespace (/proc/PID/net/tcp).
func listening(pid int, addrs ...string) (bool, error) {
	want := map[string]bool{} // "0100007F:1F90", as /proc/net/tcp writes 127.0.0.1:8080
	for _, a := range addrs {
		k, err := procAddr(a)
		if err != nil {
			return false, err
		}
		want[k] = true
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return false, err
	}
	defer f.Close()
	inodes := map[string]string{} // socket inode → the address it listens on
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fs := strings.Fields(sc.Text())
		if len(fs) >= 10 && fs[3] == "0A" && want[fs[1]] {
			inodes[fs[9]] = fs[1]
		}
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	if len(inodes) == 0 {
		return false, nil
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false, err
	}
	found := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed since
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			if a, ok := inodes[strings.TrimSuffix(ino, "]")]; ok {
				found[a] = true
			}
		}
	}
	return len(found) == len(want), nil
}

// procAddr writes an IPv4 host:port as /proc/net/tcp does: the address's
// bytes as a little-endian word, then the port, both in upper-case hex.
func procAddr(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	ip := net.ParseIP(host).To4()
	p, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return "", fmt.Errorf("%q is not an IPv4 host:port", hostport)
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p), nil
}
