package kubernetes_test

import (
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// flagSet is what a binary's --help says: flag name -> default.
type flagSet map[string]string

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	buildOut  []byte
)

// binaryFlags builds the agent and relay (into one temporary directory, once
// per test binary) and reads the flags and defaults from their --help.
func binaryFlags(t *testing.T, name string) flagSet {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "trawl-bins-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/",
			"github.com/trawl-dev/trawl/agent/cmd/trawl-agent", "github.com/trawl-dev/trawl/relay/cmd/trawl-relay")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build the binaries: %v\n%s", buildErr, buildOut)
	}
	out, err := exec.Command(filepath.Join(buildDir, name), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", name, err, out)
	}
	return parseHelp(string(out))
}

var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)(?:[ =]\S+)?\s{2,}.*?(?:\(default "?([^")]*)"?\))?$`)

func parseHelp(help string) flagSet {
	fs := flagSet{}
	for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
		fs[m[1]] = m[2]
	}
	return fs
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// portFlags says which flag of each binary sets the address behind each
// named container port, and the port Trawl pins for it.
var portFlags = map[string]map[string]struct {
	flag string
	port int32
}{
	"trawl-agent": {"metrics": {"metrics-address", 9965}},
	"trawl-relay": {"observer": {"listen-address", 4245}, "ingest": {"ingest-address", 4246}, "metrics": {"metrics-address", 9966}},
}

func TestImagesCommandsFlagsAndPortsAgreeWithTheBinaries(t *testing.T) {
	r := render(t, ".")
	for _, w := range []struct{ kind, name, container string }{
		{"DaemonSet", "trawl-agent", "agent"},
		{"Deployment", "trawl-relay", "relay"},
	} {
		t.Run(w.name, func(t *testing.T) {
			pod := podSpec(r.get(w.kind, w.name))
			if pod == nil {
				t.Fatalf("no %s %s", w.kind, w.name)
			}
			c := container(t, *pod, w.container)
			repo, tag, _ := strings.Cut(c.Image, ":")
			if path.Base(repo) != w.name || tag == "" {
				t.Errorf("image %q: want a tagged image named %s", c.Image, w.name)
			}
			if len(c.Command) != 1 || c.Command[0] != w.name {
				t.Errorf("command %v, want [%s]", c.Command, w.name)
			}
			flags := binaryFlags(t, w.name)
			if len(flags) < 5 {
				t.Fatalf("read only %d flags from %s --help", len(flags), w.name)
			}
			set := map[string]string{}
			for _, a := range c.Args {
				name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !strings.HasPrefix(a, "--") || !ok {
					t.Errorf("argument %q: want --flag=value", a)
					continue
				}
				if _, known := flags[name]; !known {
					t.Errorf("argument %q: %s has no flag --%s", a, w.name, name)
				}
				set[name] = value
			}
			for portName, pf := range portFlags[w.name] {
				addr, ok := set[pf.flag]
				if !ok {
					addr = flags[pf.flag]
				}
				_, p, err := net.SplitHostPort(addr)
				if err != nil {
					t.Errorf("--%s=%q: %v", pf.flag, addr, err)
					continue
				}
				var cp *corev1.ContainerPort
				for i := range c.Ports {
					if c.Ports[i].Name == portName {
						cp = &c.Ports[i]
					}
				}
				if cp == nil {
					t.Errorf("no container port %s", portName)
					continue
				}
				if strconv.Itoa(int(cp.ContainerPort)) != p || cp.ContainerPort != pf.port {
					t.Errorf("port %s: container port %d, binary listens on %s (--%s), pinned %d", portName, cp.ContainerPort, p, pf.flag, pf.port)
				}
			}
		})
	}
}

func TestTheAgentDialsTheRelayIngestService(t *testing.T) {
	r := render(t, ".")
	ds, _ := r.get("DaemonSet", "trawl-agent").(*appsv1.DaemonSet)
	svc, _ := r.get("Service", "trawl-relay").(*corev1.Service)
	if ds == nil || svc == nil {
		t.Fatal("no agent DaemonSet or relay Service")
	}
	var relay string
	for _, a := range container(t, ds.Spec.Template.Spec, "agent").Args {
		if v, ok := strings.CutPrefix(a, "--relay="); ok {
			relay = v
		}
	}
	host, port, err := net.SplitHostPort(relay)
	if err != nil {
		t.Fatalf("--relay=%q: %v", relay, err)
	}
	if want := svc.Name + "." + svc.Namespace + ".svc"; host != want {
		t.Errorf("--relay host %q, want the relay Service %q", host, want)
	}
	ok := slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "ingest" && strconv.Itoa(int(p.Port)) == port })
	if !ok {
		t.Errorf("--relay port %s is not the relay Service's ingest port", port)
	}
	// The relay's certificate must name the host the agent verifies.
	cert, _ := r.get("Certificate", "trawl-relay").(*certificate)
	if cert == nil || !slices.Contains(cert.Spec.DNSNames, host) {
		t.Errorf("the relay certificate does not name %q", host)
	}
}

// informerResources reads which API resources the relay's informers
// list and watch from the source of internal/kube: typed informers
// (factory.Group().Version().Kind().Informer()) and metadata informers
// (GroupVersionResource literals).
func informerResources(t *testing.T) map[string]bool {
	t.Helper()
	groups := map[string]string{"Core": "", "Apps": "apps", "Batch": "batch", "Discovery": "discovery.k8s.io",
		"Networking": "networking.k8s.io", "Policy": "policy", "Rbac": "rbac.authorization.k8s.io"}
	typed := regexp.MustCompile(`\.(\w+)\(\)\.V\w*\(\)\.(\w+)\(\)\.Informer\(\)`)
	gvr := regexp.MustCompile(`GroupVersionResource\{Group:\s*"([^"]*)",\s*Version:\s*"[^"]*",\s*Resource:\s*"([^"]*)"\}`)
	files, _ := filepath.Glob("../../internal/kube/*.go")
	res := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range typed.FindAllStringSubmatch(string(b), -1) {
			g, ok := groups[m[1]]
			if !ok {
				t.Fatalf("%s: informer of unknown API group accessor %s()", f, m[1])
			}
			res[g+"/"+strings.ToLower(m[2])] = true
		}
		for _, m := range gvr.FindAllStringSubmatch(string(b), -1) {
			res[m[1]+"/"+m[2]] = true
		}
	}
	return res
}

func TestRelayRBACGrantsExactlyListAndWatchOfWhatTheInformersWatch(t *testing.T) {
	want := informerResources(t)
	if len(want) < 6 {
		t.Fatalf("found only %d informer resources in internal/kube: %v", len(want), want)
	}
	r := render(t, ".")
	role, _ := r.get("ClusterRole", "trawl-relay").(*rbacv1.ClusterRole)
	if role == nil {
		t.Fatal("no ClusterRole trawl-relay")
	}
	granted := map[string]bool{}
	for _, rule := range role.Rules {
		verbs := slices.Clone(rule.Verbs)
		slices.Sort(verbs)
		if !slices.Equal(verbs, []string{"list", "watch"}) {
			t.Errorf("rule %v: verbs %v, want exactly list and watch", rule.Resources, rule.Verbs)
		}
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				granted[g+"/"+res] = true
			}
		}
	}
	for res := range want {
		if !granted[res] {
			t.Errorf("informer on %s is not granted", res)
		}
	}
	for res := range granted {
		if !want[res] {
			t.Errorf("%s is granted but no informer watches it", res)
		}
	}
	binding, _ := r.get("ClusterRoleBinding", "trawl-relay").(*rbacv1.ClusterRoleBinding)
	d, _ := r.get("Deployment", "trawl-relay").(*appsv1.Deployment)
	if binding == nil || d == nil || binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Name != d.Spec.Template.Spec.ServiceAccountName || binding.Subjects[0].Namespace != d.Namespace {
		t.Errorf("the ClusterRole is not bound to the relay's service account: %+v", binding)
	}
}
