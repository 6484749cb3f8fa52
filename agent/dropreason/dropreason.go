// Package dropreason names the kernel's packet drop reasons.
//
// The numbers of enum skb_drop_reason change between kernel versions, so the
// table is read from the running kernel: its BTF first, the print format of
// the skb:kfree_skb tracepoint (tracefs) as a fallback. Nothing is hard-coded.
package dropreason

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// Table maps reason numbers to names without the SKB_DROP_REASON_ prefix
// ("NO_SOCKET", "NETFILTER_DROP"; SKB_CONSUMED becomes "CONSUMED").
type Table struct {
	// Source says where the names came from: "btf" or a tracefs path.
	Source string
	byNum  map[uint32]string
	byName map[string]uint32
}

func newTable(source string) *Table {
	return &Table{Source: source, byNum: map[uint32]string{}, byName: map[string]uint32{}}
}

func (t *Table) add(num uint32, name string) {
	t.byNum[num] = name
	t.byName[name] = num
}

// Name returns the kernel's name of a reason, or "UNKNOWN_<n>" for numbers
// the table lacks (e.g. subsystem reasons with high bits set).
func (t *Table) Name(n uint32) string {
	if name, ok := t.byNum[n]; ok {
		return name
	}
	return "UNKNOWN_" + strconv.FormatUint(uint64(n), 10)
}

// Number returns the running kernel's number for a reason name.
func (t *Table) Number(name string) (uint32, bool) {
	n, ok := t.byName[strings.TrimPrefix(strings.ToUpper(name), "SKB_DROP_REASON_")]
	return n, ok
}

// Names lists all names, sorted by number.
func (t *Table) Names() []string {
	nums := make([]uint32, 0, len(t.byNum))
	for n := range t.byNum {
		nums = append(nums, n)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	out := make([]string, len(nums))
	for i, n := range nums {
		out[i] = t.byNum[n]
	}
	return out
}

// DefaultExcluded are the reasons left out unless asked for: they are not
// drops anyone needs to see (generic frees and normal consumption).
var DefaultExcluded = []string{"NOT_SPECIFIED", "CONSUMED", "NOT_DROPPED_YET"}

// Select turns a --drop-reasons value into reason numbers. An empty spec
// means every reason but DefaultExcluded; "all" means every reason; otherwise
// a comma-separated list of names, where a leading "-" excludes a name from
// the default set ("-NO_SOCKET").
func (t *Table) Select(spec string) ([]uint32, error) {
	spec = strings.TrimSpace(spec)
	set := map[uint32]bool{}
	var includes, excludes []string
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
		case strings.HasPrefix(f, "-"):
			excludes = append(excludes, f[1:])
		default:
			includes = append(includes, f)
		}
	}
	switch {
	case len(includes) == 1 && strings.EqualFold(includes[0], "all"):
		for n := range t.byNum {
			set[n] = true
		}
	case len(includes) > 0:
		for _, name := range includes {
			n, ok := t.Number(name)
			if !ok {
				return nil, fmt.Errorf("unknown drop reason %q (this kernel knows %d reasons, e.g. NO_SOCKET, NETFILTER_DROP)", name, len(t.byNum))
			}
			set[n] = true
		}
	default:
		for n := range t.byNum {
			set[n] = true
		}
		excludes = append(excludes, DefaultExcluded...)
	}
	for _, name := range excludes {
		n, ok := t.Number(name)
		if !ok {
			if contains(DefaultExcluded, name) {
				continue // not every kernel has every default exclusion
			}
			return nil, fmt.Errorf("unknown drop reason %q", name)
		}
		delete(set, n)
	}
	out := make([]uint32, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// FromBTF reads enum skb_drop_reason from kernel BTF.
func FromBTF(spec *btf.Spec) (*Table, error) {
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		return nil, fmt.Errorf("find enum skb_drop_reason in BTF: %w", err)
	}
	t := newTable("btf")
	for _, v := range enum.Values {
		name := v.Name
		switch {
		case strings.HasPrefix(name, "SKB_DROP_REASON_"):
			name = strings.TrimPrefix(name, "SKB_DROP_REASON_")
		case strings.HasPrefix(name, "SKB_"):
			name = strings.TrimPrefix(name, "SKB_") // SKB_CONSUMED, SKB_NOT_DROPPED_YET
		}
		if name == "MAX" || strings.HasPrefix(name, "SUBSYS_") {
			continue // markers, not reasons
		}
		t.add(uint32(v.Value), name)
	}
	if len(t.byNum) == 0 {
		return nil, errors.New("enum skb_drop_reason in BTF has no values")
	}
	return t, nil
}

var symbolicEntry = regexp.MustCompile(`\{\s*(\d+)\s*,\s*"([A-Z0-9_]+)"\s*\}`)

// FromTracefsFormat parses the __print_symbolic table of the kfree_skb
// tracepoint's format file.
func FromTracefsFormat(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tracepoint format: %w", err)
	}
	i := strings.Index(string(data), "__print_symbolic(REC->reason")
	if i < 0 {
		return nil, fmt.Errorf("%s: no __print_symbolic table for reason", path)
	}
	t := newTable(path)
	for _, m := range symbolicEntry.FindAllStringSubmatch(string(data[i:]), -1) {
		n, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil {
			continue
		}
		t.add(uint32(n), m[2])
	}
	if len(t.byNum) == 0 {
		return nil, fmt.Errorf("%s: empty reason table", path)
	}
	return t, nil
}

// TracefsFormatPaths are where the kfree_skb format file is looked for.
var TracefsFormatPaths = []string{
	"/sys/kernel/tracing/events/skb/kfree_skb/format",
	"/sys/kernel/debug/tracing/events/skb/kfree_skb/format",
}

// Load reads the table of the running kernel: BTF when spec is non-nil and
// has the enum, tracefs otherwise.
func Load(spec *btf.Spec) (*Table, error) {
	return load(spec, TracefsFormatPaths)
}

func load(spec *btf.Spec, formatPaths []string) (*Table, error) {
	var errs []error
	if spec != nil {
		t, err := FromBTF(spec)
		if err == nil {
			return t, nil
		}
		errs = append(errs, err)
	}
	for _, p := range formatPaths {
		t, err := FromTracefsFormat(filepath.Clean(p))
		if err == nil {
			return t, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("resolve drop reason names: %w", errors.Join(errs...))
}
