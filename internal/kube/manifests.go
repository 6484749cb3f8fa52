package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// ManifestSource reads Kubernetes objects from YAML (or JSON) manifests: a
// file, or every *.yaml, *.yml and *.json file under a directory. Multi-doc
// files and `kind: List` are read. It polls for changes and replaces the
// store's state on each successful reload; a reload that fails is logged
// and the previous state kept.
type ManifestSource struct {
	Path string
	// Interval between checks for changes. Default 1 s.
	Interval time.Duration
}

// Name says what the source reads.
func (m *ManifestSource) Name() string { return "manifests " + m.Path }

// Start loads the manifests into s, then watches them until ctx ends.
func (m *ManifestSource) Start(ctx context.Context, s *Store) error {
	objs, stamp, err := LoadManifests(m.Path)
	if err != nil {
		return err
	}
	s.ReplaceAll(objs)
	iv := m.Interval
	if iv <= 0 {
		iv = time.Second
	}
	go func() {
		t := time.NewTicker(iv)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now, err := manifestStamp(m.Path)
			if err != nil || now == stamp {
				if err != nil {
					s.cfg.Log.Warn("manifests unreadable, keeping the last state", "path", m.Path, "err", err)
				}
				continue
			}
			objs, st, err := LoadManifests(m.Path)
			if err != nil {
				s.cfg.Log.Warn("manifest reload failed, keeping the last state", "path", m.Path, "err", err)
				stamp = now // do not retry until the files change again
				continue
			}
			stamp = st
			s.ReplaceAll(objs)
			s.cfg.Log.Info("manifests reloaded", "path", m.Path, "objects", len(objs))
		}
	}()
	return nil
}

func manifestFiles(path string) ([]string, error) {
	// The errors of Stat and WalkDir name the path; the caller names the
	// source.
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

// manifestStamp summarises names, sizes and modification times, to notice
// changes without reading the files.
func manifestStamp(path string) (string, error) {
	files, err := manifestFiles(path)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
	}
	return b.String(), nil
}

// LoadManifests reads every object under path. Kinds Trawl does not use
// (ConfigMaps, Deployments, ...) are skipped; a document that does not parse
// is an error naming its file and position.
func LoadManifests(path string) (objs []any, stamp string, err error) {
	stamp, err = manifestStamp(path)
	if err != nil {
		return nil, "", err
	}
	files, err := manifestFiles(path)
	if err != nil {
		return nil, "", err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, "", fmt.Errorf("read manifest: %w", err)
		}
		o, err := DecodeManifests(data)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", f, err)
		}
		objs = append(objs, o...)
	}
	return objs, stamp, nil
}

// DecodeManifests decodes a multi-document YAML stream.
func DecodeManifests(data []byte) ([]any, error) {
	var out []any
	for i, doc := range splitDocs(data) {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if len(bytes.TrimSpace(js)) == 0 || string(js) == "null" {
			continue
		}
		objs, err := decodeJSON(js)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "---") && strings.TrimSpace(strings.SplitN(line[3:], "#", 2)[0]) == "" {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	return append(docs, cur.Bytes())
}

func decodeJSON(js []byte) ([]any, error) {
	var tm struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if tm.Kind == "" {
		return nil, fmt.Errorf("object without kind")
	}
	into := func(v any) ([]any, error) {
		if err := json.Unmarshal(js, v); err != nil {
			return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
		}
		return []any{v}, nil
	}
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 List":
		var out []any
		for i, it := range tm.Items {
			o, err := decodeJSON(it)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, o...)
		}
		return out, nil
	case "v1 Pod":
		return into(&corev1.Pod{})
	case "v1 Namespace":
		return into(&corev1.Namespace{})
	case "v1 Service":
		return into(&corev1.Service{})
	case "v1 Node":
		return into(&corev1.Node{})
	case "discovery.k8s.io/v1 EndpointSlice":
		return into(&discoveryv1.EndpointSlice{})
	case "networking.k8s.io/v1 NetworkPolicy":
		return into(&networkingv1.NetworkPolicy{})
	case "apps/v1 ReplicaSet":
		var rs appsv1.ReplicaSet
		if _, err := into(&rs); err != nil {
			return nil, err
		}
		return []any{ownerMeta(KindReplicaSet, rs.ObjectMeta)}, nil
	case "batch/v1 Job":
		var j batchv1.Job
		if _, err := into(&j); err != nil {
			return nil, err
		}
		return []any{ownerMeta(KindJob, j.ObjectMeta)}, nil
	}
	return nil, nil // a kind Trawl does not use
}
