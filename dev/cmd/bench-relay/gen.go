package main

import (
	"fmt"

	"github.com/trawl-dev/trawl/dev/benchdata"
	"github.com/trawl-dev/trawl/relay/store"
)

// batch is one agent batch of the data set (dev/benchdata).
type batch = benchdata.Batch

func storeBatch(b batch) *store.Batch {
	return &store.Batch{Key: fmt.Sprintf("%s/%s/%d", b.Node, b.Boot, b.Seq), Flows: b.Flows}
}
