package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// Source feeds a Store: Start loads the initial state and returns once it
// is complete, then keeps the store current until ctx ends.
type Source interface {
	Name() string
	Start(ctx context.Context, s *Store) error
}

// InformerSource watches the API server with client-go informers: typed
// informers for Pods, Namespaces, Services, EndpointSlices, NetworkPolicies
// and Nodes, metadata-only informers for ReplicaSets and Jobs (only their
// ownerReferences matter, and they are many).
type InformerSource struct {
	Client   kubernetes.Interface
	Metadata metadata.Interface
	// Resync period of the informers; 0 disables resync.
	Resync time.Duration
	// SyncTimeout bounds the wait for the initial lists. Default 2 min.
	SyncTimeout time.Duration
}

// Name says what the source reads.
func (i *InformerSource) Name() string { return "kubernetes API" }

var (
	gvrReplicaSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	gvrJobs        = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
)

// Start starts the informers and waits for their caches to sync.
func (i *InformerSource) Start(ctx context.Context, s *Store) error {
	f := informers.NewSharedInformerFactory(i.Client, i.Resync)
	typed := []cache.SharedIndexInformer{
		f.Core().V1().Pods().Informer(),
		f.Core().V1().Namespaces().Informer(),
		f.Core().V1().Services().Informer(),
		f.Discovery().V1().EndpointSlices().Informer(),
		f.Networking().V1().NetworkPolicies().Informer(),
		f.Core().V1().Nodes().Informer(),
	}
	var synced []cache.InformerSynced
	for _, inf := range typed {
		// Managed fields are most of an object's size and useless here.
		_ = inf.SetTransform(stripManagedFields)
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.Upsert(obj) },
			UpdateFunc: func(_, obj any) { s.Upsert(obj) },
			DeleteFunc: func(obj any) { s.Delete(unwrapTombstone(obj)) },
		}); err != nil {
			return fmt.Errorf("informer handler: %w", err)
		}
		synced = append(synced, inf.HasSynced)
	}
	if i.Metadata != nil {
		mf := metadatainformer.NewSharedInformerFactory(i.Metadata, i.Resync)
		for kind, gvr := range map[string]schema.GroupVersionResource{KindReplicaSet: gvrReplicaSets, KindJob: gvrJobs} {
			inf := mf.ForResource(gvr).Informer()
			_ = inf.SetTransform(stripManagedFields)
			if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    func(obj any) { upsertMeta(s, kind, obj, false) },
				UpdateFunc: func(_, obj any) { upsertMeta(s, kind, obj, false) },
				DeleteFunc: func(obj any) { upsertMeta(s, kind, unwrapTombstone(obj), true) },
			}); err != nil {
				return fmt.Errorf("metadata informer handler: %w", err)
			}
			synced = append(synced, inf.HasSynced)
		}
		mf.Start(ctx.Done())
	}
	f.Start(ctx.Done())
	to := i.SyncTimeout
	if to <= 0 {
		to = 2 * time.Minute
	}
	sctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), synced...) {
		return fmt.Errorf("kubernetes informers did not sync within %s", to)
	}
	return nil
}

func upsertMeta(s *Store, kind string, obj any, del bool) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	if del {
		s.DeleteOwner(kind, &m.ObjectMeta)
	} else {
		s.UpsertOwner(kind, &m.ObjectMeta)
	}
}

func unwrapTombstone(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

// stripManagedFields keeps only what enrichment and policies read: at 5,000
// nodes (~150k pods) the informer cache is the relay's largest memory user,
// and a full Pod (managed fields, env, volumes, conditions) is ~10x the
// trimmed one. Nodes lose their image lists, the bulk of a Node.
func stripManagedFields(obj any) (any, error) {
	switch x := obj.(type) {
	case *corev1.Pod:
		return trimPod(x), nil
	case *corev1.Node:
		n := &corev1.Node{ObjectMeta: trimMeta(x.ObjectMeta)}
		n.Status.Addresses = x.Status.Addresses
		return n, nil
	}
	if a, ok := obj.(metav1.ObjectMetaAccessor); ok {
		a.GetObjectMeta().SetManagedFields(nil)
	}
	return obj, nil
}

func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: m.Labels, OwnerReferences: m.OwnerReferences, DeletionTimestamp: m.DeletionTimestamp}
}

func trimPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: trimMeta(p.ObjectMeta)}
	out.Spec.NodeName, out.Spec.HostNetwork = p.Spec.NodeName, p.Spec.HostNetwork
	for _, c := range p.Spec.Containers {
		if len(c.Ports) > 0 {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	for _, c := range p.Spec.InitContainers { // sidecars can name ports too
		if len(c.Ports) > 0 {
			out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	out.Status.Phase, out.Status.PodIP, out.Status.PodIPs = p.Status.Phase, p.Status.PodIP, p.Status.PodIPs
	return out
}

// NewClients builds the typed and metadata clients from a kubeconfig file,
// or from the in-cluster service account when inCluster is set.
func NewClients(kubeconfig string, inCluster bool) (kubernetes.Interface, metadata.Interface, error) {
	var cfg *rest.Config
	var err error
	if inCluster {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.UserAgent = "trawl"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	m, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes metadata client: %w", err)
	}
	return c, m, nil
}

func ownerMeta(kind string, m metav1.ObjectMeta) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: kind}, ObjectMeta: m}
}
