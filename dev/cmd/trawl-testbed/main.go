// Command trawl-testbed builds a test bed (see package testbed) for scripts:
// it prints the bed as one JSON line on stdout, keeps it while running, and
// removes it on SIGINT or SIGTERM.
//
//	trawl-testbed --pods client,server
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/trawl-dev/trawl/internal/testbed"
)

type podJSON struct {
	Name     string `json:"name"`
	Netns    string `json:"netns"`
	IP       string `json:"ip"`
	HostVeth string `json:"host_veth"`
}

type bedJSON struct {
	ID       string    `json:"id"`
	Node     string    `json:"node"`
	PodCIDR  string    `json:"pod_cidr"`
	RootAddr string    `json:"root_addr"`
	NodeAddr string    `json:"node_addr"`
	NodeLink string    `json:"node_link"`
	Pods     []podJSON `json:"pods"`
}

func main() {
	pods := flag.String("pods", "a,b", "comma-separated pod names")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b, err := testbed.New(ctx, testbed.Config{Pods: strings.Split(*pods, ",")})
	if err != nil {
		fmt.Fprintf(os.Stderr, "trawl-testbed: %v\n", err)
		os.Exit(1)
	}
	out := bedJSON{ID: b.ID, Node: b.Node.Name, PodCIDR: b.PodCIDR.String(), RootAddr: b.RootAddr.String(), NodeAddr: b.NodeAddr.String(), NodeLink: b.NodeLink}
	for _, p := range b.Pods {
		out.Pods = append(out.Pods, podJSON{Name: p.PodName, Netns: p.Name, IP: p.IP.String(), HostVeth: p.HostVeth})
	}
	json.NewEncoder(os.Stdout).Encode(out)
	<-ctx.Done()
	if err := b.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "trawl-testbed: close: %v\n", err)
		os.Exit(1)
	}
}
