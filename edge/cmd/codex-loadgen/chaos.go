package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// chaosOutcome is one request of the chaos load.
type chaosOutcome struct {
	At       int64  `json:"at_ms"` // when it was sent, Unix milliseconds
	Edge     int    `json:"edge"`  // the edge that answered (or failed it)
	Kind     string `json:"kind"`  // json, hit or stream
	Status   int    `json:"status"`
	OK       bool   `json:"ok"`
	Answered bool   `json:"answered"` // a whole HTTP answer came back, whatever its status
	Rerouted bool   `json:"rerouted"` // the first edge refused the connection; sent to the other
	// Reused: sent on a kept-alive connection, which an edge stopping may
	// close as the request arrives (the request then fails with EOF).
	Reused bool   `json:"reused,omitempty"`
	Err    string `json:"err,omitempty"`
}

// runChaos keeps a steady mixed load (distinct JSON requests, repeats that
// the cache answers, streams) on the edges until ctx ends, as a load
// balancer would spread it: round robin, and a request whose connection an
// edge refuses (it is down) goes to the next one. Every outcome is written
// to out as JSON lines.
func runChaos(ctx context.Context, edges []target, rate int, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	var mu sync.Mutex
	var sent, failed atomic.Int64
	c := client(rate/5 + 8)
	// A finished phase leaves no idle connections open on the edge for
	// the next one to pay for.
	defer c.CloseIdleConnections()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	var wg sync.WaitGroup
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			// A null ends the stream: the run finished, it was not cut off.
			return errors.Join(enc.Encode(nil), bw.Flush(), f.Close())
		case <-progress.C:
			fmt.Fprintf(os.Stderr, "chaos load: %d sent, %d failed\n", sent.Load(), failed.Load())
			continue
		case <-tick.C:
		}
		kind := [...]string{"json", "hit", "json", "stream"}[n%4]
		first := n % len(edges)
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := chaosOne(c, edges, first, kind)
			sent.Add(1)
			if !o.OK {
				failed.Add(1)
			}
			mu.Lock()
			defer mu.Unlock()
			_ = enc.Encode(o) // a write error shows at the final flush
		}()
	}
}

// chaosOne sends one request of kind to edges[first], or to the next edge
// when that one refuses the connection.
func chaosOne(c *http.Client, edges []target, first int, kind string) chaosOutcome {
	o := chaosOutcome{At: time.Now().UnixMilli(), Kind: kind}
	for i := range len(edges) {
		o.Edge = (first + i) % len(edges)
		o.Rerouted = i > 0
		status, answered, reused, err := chaosSend(c, edges[o.Edge], kind)
		o.Status, o.Answered, o.Reused = status, answered, reused
		if err == nil {
			o.OK = status == http.StatusOK
			if !o.OK {
				o.Err = "status " + strconv.Itoa(status)
			}
			return o
		}
		o.Err = err.Error()
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return o // sent, then lost: an in-flight failure
		}
	}
	return o
}

func chaosSend(c *http.Client, t target, kind string) (status int, answered, reused bool, err error) {
	var b []byte
	switch kind {
	case "stream":
		b = fmt.Appendf(nil, `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"chaos stream %d-%d"}]}`, runID, seq.Add(1))
	default:
		b = body(kind == "json")
	}
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }})
	req, err := chatRequest(ctx, t, b)
	if err != nil {
		return 0, false, false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, false, reused, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, false, reused, err
	}
	if kind == "stream" && resp.StatusCode == http.StatusOK && !strings.Contains(string(data), "[DONE]") {
		return resp.StatusCode, false, reused, errors.New("stream ended before [DONE]")
	}
	return resp.StatusCode, true, reused, nil
}

// chaosFault is one fault of a chaos run, as scripts/chaos.sh logs it: what
// was killed, when, and when it answered again.
type chaosFault struct {
	Name       string
	Start, End int64 // Unix milliseconds
}

// readChaosFaults reads "NAME START_MS END_MS" lines.
func readChaosFaults(path string) ([]chaosFault, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var fs []chaosFault
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("fault line %q: want NAME START_MS END_MS", line)
		}
		s, err1 := strconv.ParseInt(f[1], 10, 64)
		e, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || e < s {
			return nil, fmt.Errorf("fault line %q: bad times", line)
		}
		fs = append(fs, chaosFault{Name: f[0], Start: s, End: e})
	}
	return fs, nil
}

// chaosReport prints the chaos run's table: failed requests per fault (a
// request belongs to the fault whose window, from the kill to recovery
// plus grace, it was sent in), and the accounting of answered requests
// against the edges' metadata rows and the control plane's totals. It
// returns whether every target held.
func chaosReport(w io.Writer, resultsPath, faultsPath string, grace time.Duration, rows, cpRequests int64) (bool, error) {
	faults, err := readChaosFaults(faultsPath)
	if err != nil {
		return false, err
	}
	f, err := os.Open(resultsPath)
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }() // read only
	dec := json.NewDecoder(bufio.NewReader(f))
	type tally struct{ sent, failed, rerouted int }
	per := make([]tally, len(faults)+1) // the last: outside every fault
	var answered, total int64
	complete := false
	examples := map[int]string{}
	for {
		var o *chaosOutcome
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return false, fmt.Errorf("read %s: %w", resultsPath, err)
		}
		if o == nil {
			complete = true
			break
		}
		total++
		if o.Answered {
			answered++
		}
		i := len(faults)
		for j, ft := range faults {
			if o.At >= ft.Start && o.At <= ft.End+grace.Milliseconds() {
				i = j
				break
			}
		}
		per[i].sent++
		if o.Rerouted {
			per[i].rerouted++
		}
		if !o.OK {
			per[i].failed++
			if _, ok := examples[i]; !ok {
				examples[i] = fmt.Sprintf("%s to edge %d: %s", o.Kind, o.Edge, o.Err)
				if o.Reused {
					examples[i] += " (on a kept-alive connection)"
				}
			}
		}
	}
	if !complete {
		return false, fmt.Errorf("%s ends early: the load generator did not finish", resultsPath)
	}
	pass := true
	fmt.Fprintf(w, "\n%-22s %8s %8s %9s %12s  %s\n", "fault", "sent", "failed", "rerouted", "back after", "target")
	for i, t := range per {
		name, recovered, target := "(no fault)", "-", "0 failed"
		ok := t.failed == 0
		if i < len(faults) {
			name = faults[i].Name
			recovered = (time.Duration(faults[i].End-faults[i].Start) * time.Millisecond).Round(100 * time.Millisecond).String()
			if strings.HasPrefix(name, "edge") {
				target = "in-flight of the killed edge only (it drains them: 0)"
			}
		}
		if !ok {
			pass = false
			target += " FAIL: " + examples[i]
		}
		fmt.Fprintf(w, "%-22s %8d %8d %9d %12s  %s\n", name, t.sent, t.failed, t.rerouted, recovered, target)
	}
	rowsOK, cpOK := rows == answered, cpRequests == rows
	pass = pass && rowsOK && cpOK
	fmt.Fprintf(w, "\n(rerouted: the edge refused the connection, as a load balancer sees a stopped instance, and the other answered; back after: from the kill until it answered again, its time down included)\n")
	fmt.Fprintf(w, "requests sent %d, answered %d\n", total, answered)
	fmt.Fprintf(w, "metadata rows on the edges' store: %d (lost: %d) %s\n", rows, answered-rows, passFail(rowsOK))
	fmt.Fprintf(w, "requests in the control plane's totals: %d (lost or doubled: %+d) %s\n", cpRequests, cpRequests-rows, passFail(cpOK))
	return pass, nil
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}
