package sse_test

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/persiv/codex/edge/sse"
)

func Example() {
	upstream := strings.NewReader("event: message_start\ndata: {\"type\":\"message_start\"}\n\n: ping\n\ndata: line 1\ndata: line 2\n\n")
	r := sse.NewReader(upstream)
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		// A proxy writes ev.Raw to the client and flushes; the parsed
		// fields are for accounting.
		fmt.Printf("%d raw bytes, event %q, data %q, dispatched %v\n", len(ev.Raw), ev.Name, ev.Data, ev.HasData)
	}

	// Replaying a cached answer.
	if err := sse.Write(os.Stdout, "content_block_delta", []byte("a\nb")); err != nil {
		panic(err)
	}
	// Output:
	// 53 raw bytes, event "message_start", data "{\"type\":\"message_start\"}", dispatched true
	// 8 raw bytes, event "", data "", dispatched false
	// 27 raw bytes, event "", data "line 1\nline 2", dispatched true
	// event: content_block_delta
	// data: a
	// data: b
}
