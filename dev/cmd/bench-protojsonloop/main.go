// Command protojsonloop is the benchmark's baseline: it only decodes each
// JSON line with protojson (what a straightforward CLI would do before any
// filtering or formatting) and prints the count.
package main

import (
	"bufio"
	"fmt"
	"log"
	"os"

	"google.golang.org/protobuf/encoding/protojson"

	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	opts := protojson.UnmarshalOptions{DiscardUnknown: true}
	n := 0
	for sc.Scan() {
		r := &observerv1.GetFlowsResponse{}
		if err := opts.Unmarshal(sc.Bytes(), r); err != nil {
			log.Fatal(err)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)
}
