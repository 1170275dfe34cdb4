package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// hostileOptions configure the hostile phase: legitimate load on the edge
// alone, then the same load while hostile clients work on its client
// listener.
type hostileOptions struct {
	rate     int           // legitimate requests per second
	duration time.Duration // of each measurement, baseline and under attack
	warmup   time.Duration
	// slowloris connections send a request's headers one line a second and
	// never finish them; slowBodies send whole headers, then the body one
	// byte a second.
	slowloris, slowBodies int
	depth                 int // nesting of the deep JSON bodies
	deepRate              int // deep JSON bodies sent per second
	// longLines streams at a time ask the fake provider (model
	// fake-long-line) for an answer streamed as one SSE line of
	// longLineBytes.
	longLines, longLineBytes int
	// headerTimeout and readTimeout are the edge's (CODEX_CLIENT_HEADER_TIMEOUT,
	// CODEX_CLIENT_READ_TIMEOUT), which slowloris and slow bodies are judged
	// against; readTimeout 0 means the edge has none.
	headerTimeout, readTimeout time.Duration
	maxRSS                     int64  // bytes the edge's RSS may reach under attack
	pid                        int    // the edge's process id, for its memory
	metrics                    string // the edge's /metrics URL, for its own added latency
	// key is the gateway key the hostile clients use: another org's, whose
	// provider is another fake, so that the stand-in provider's own work
	// for the long answers does not slow the legitimate requests' answers
	// (a real provider is elsewhere). Empty: the legitimate key.
	key string
}

// grace is how much later than its timeout the edge may close a slow
// connection: the timeout starts when the edge starts reading, a little
// after the connection opened, and the close takes a scheduler wake-up.
const grace = 2 * time.Second

// lineInterval is how often a slow client sends its next header line or
// body byte.
const lineInterval = time.Second

// hostileResult is what the hostile phase measured.
type hostileResult struct {
	opts             hostileOptions
	baseline, attack result
	// RSS of the edge: peak of the baseline, peak under attack, and the
	// kernel's high-water mark (VmHWM) at the end, which covers the whole
	// life of the process.
	baseRSS, peakRSS, hwm int64
	// The edge's own measure of what it adds (total − provider time) to
	// legitimate requests, from its metrics; empty when not readable.
	baseOwn, attackOwn hist
	// The legitimate requests' provider time as the edge saw it.
	baseUp, attackUp      hist
	deep                  outcomes[deepOutcome]
	long                  outcomes[longOutcome]
	slowHeaders, slowBody slowStats
	alive                 bool // the edge answered /healthz after the attack
}

// outcomes counts results by kind and keeps the first example of each.
type outcomes[K comparable] struct {
	mu    sync.Mutex
	n     map[K]int
	first map[K]string
}

func (o *outcomes[K]) add(k K, example string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n, o.first = map[K]int{}, map[K]string{}
	}
	o.n[k]++
	if _, ok := o.first[k]; !ok {
		o.first[k] = example
	}
}

func (o *outcomes[K]) count(k K) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[k]
}

func (o *outcomes[K]) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := 0
	for _, n := range o.n {
		t += n
	}
	return t
}

func (o *outcomes[K]) example(k K) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.first[k]
}

// deepOutcome is how the edge answered a deeply nested JSON body.
type deepOutcome int

const (
	deepRejected  deepOutcome = iota // 400 in the provider's error shape
	deepForwarded                    // 2xx: the edge passed it on
	deepOther                        // anything else: a transport error, another status, an unshaped body
)

// classifyDeep judges the edge's answer to a deep JSON body: a clear
// refusal is a 400 whose body is a provider's error shape.
func classifyDeep(status int, body []byte, err error) deepOutcome {
	switch {
	case err != nil:
		return deepOther
	case status >= 200 && status < 300:
		return deepForwarded
	case status == http.StatusBadRequest && providerError(body):
		return deepRejected
	}
	return deepOther
}

// openAIError reports whether b is {"error":{"message":…,"type":…}} with
// both set.
func providerError(b []byte) bool {
	var e struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	return json.Unmarshal(b, &e) == nil && e.Error != nil && e.Error.Message != "" && e.Error.Type != ""
}

// longOutcome is how a stream whose answer is one long SSE line ended.
type longOutcome int

const (
	longDelivered longOutcome = iota // the whole line, and the stream's end
	longRefused                      // a clear error: an error status in the provider's shape, or an error event
	longBroken                       // anything else: cut short, truncated, no end
)

// streamSeen is what a client saw of one stream.
type streamSeen struct {
	status     int
	body       []byte // an error answer's body (not a stream's)
	longest    int    // longest line, in bytes
	done       bool   // the stream's last event (message_stop) arrived
	errorEvent bool   // an error event arrived
	err        error  // reading failed
}

// classifyLong judges a long-line stream: delivered when a line of at
// least want bytes and the end of the stream arrived; refused when the edge
// said why (an error status in the provider's shape, or an error event);
// broken otherwise.
func classifyLong(s streamSeen, want int) longOutcome {
	switch {
	case s.status >= 400 && providerError(s.body):
		return longRefused
	case s.status != http.StatusOK:
		return longBroken
	case s.errorEvent:
		return longRefused
	case s.err == nil && s.done && s.longest >= want:
		return longDelivered
	}
	return longBroken
}

// slowStats records the slow connections of one kind.
type slowStats struct {
	mu       sync.Mutex
	opened   int
	dialErrs int
	closed   []time.Duration // lifetimes of connections the edge closed
	open     []time.Duration // ages of connections still open at the end
}

func (s *slowStats) add(closedByEdge bool, life time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if closedByEdge {
		s.closed = append(s.closed, life)
	} else {
		s.open = append(s.open, life)
	}
}

// summary is a sorted copy of the lifetimes.
func (s *slowStats) summary() (opened, dialErrs int, closed, open []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	closed, open = slices.Clone(s.closed), slices.Clone(s.open)
	slices.Sort(closed)
	slices.Sort(open)
	return s.opened, s.dialErrs, closed, open
}

// runHostile measures the legitimate load alone, then under attack.
func runHostile(t target, o hostileOptions) (*hostileResult, error) {
	u, err := url.Parse(t.url)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("hostile phase: the edge must be a plain http:// URL, got %q", t.url)
	}
	res := &hostileResult{opts: o}

	m := measureFor(o)
	fmt.Fprintf(os.Stderr, "hostile: baseline, %d req/s of distinct requests against the edge alone for %s…\n", o.rate, m)
	runFixed(t, o.rate, o.warmup, true)
	stopRSS := sampleRSS(o.pid, &res.baseRSS)
	before, _ := scrape(o.metrics, addedMetric)
	beforeUp, _ := scrape(o.metrics, upstreamMetric)
	res.baseline = runFixed(t, o.rate, m, true)
	res.baseOwn = since(o.metrics, addedMetric, before)
	res.baseUp = since(o.metrics, upstreamMetric, beforeUp)
	stopRSS()

	fmt.Fprintf(os.Stderr, "hostile: the same load for %s while %d slowloris connections, %d slow bodies, %d-deep JSON bodies at %d/s and %d streams of a %d-byte SSE line attack…\n",
		m, o.slowloris, o.slowBodies, o.depth, o.deepRate, o.longLines, o.longLineBytes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopRSS = sampleRSS(o.pid, &res.peakRSS)
	var wg sync.WaitGroup
	addr := u.Host
	ht := t
	if o.key != "" {
		ht.key = o.key
	}
	for i := range o.slowloris {
		wg.Go(func() { slowConn(ctx, addr, ht.key, false, i, &res.slowHeaders) })
	}
	for i := range o.slowBodies {
		wg.Go(func() { slowConn(ctx, addr, ht.key, true, i, &res.slowBody) })
	}
	wg.Go(func() { sendDeep(ctx, ht, o.depth, o.deepRate, &res.deep) })
	for range o.longLines {
		wg.Go(func() {
			for ctx.Err() == nil {
				s := longStream(ctx, ht)
				if ctx.Err() != nil && s.err != nil {
					return // cut by the end of the phase, not by the edge
				}
				res.long.add(classifyLong(s, o.longLineBytes), describeStream(s))
			}
		})
	}
	time.Sleep(time.Second) // let the slow connections open
	// The edge's chat completions histograms hold only the legitimate
	// requests: the deep bodies never reach a provider, and the long
	// lines go to the Messages route.
	before, _ = scrape(o.metrics, addedMetric)
	beforeUp, _ = scrape(o.metrics, upstreamMetric)
	res.attack = runFixed(t, o.rate, m, true)
	res.attackOwn = since(o.metrics, addedMetric, before)
	res.attackUp = since(o.metrics, upstreamMetric, beforeUp)
	cancel()
	wg.Wait()
	stopRSS()
	res.hwm = readStatus(o.pid, "VmHWM:")
	res.alive = healthy(t.url) && (o.pid <= 0 || readStatus(o.pid, "VmRSS:") > 0)
	return res, nil
}

// since scrapes metric again and returns what was observed after before;
// empty when the metrics cannot be read.
func since(url, metric string, before hist) hist {
	after, ok := scrape(url, metric)
	if !ok {
		return hist{}
	}
	return after.since(before)
}

// measureFor is how long each measurement lasts: o.duration, and at least
// long enough for the edge's timeouts to cut the slow connections while
// legitimate load is measured, since their churn (cut, opened again) is
// part of what that load sees.
func measureFor(o hostileOptions) time.Duration {
	m := o.duration
	for _, d := range []time.Duration{o.headerTimeout, o.readTimeout} {
		if d > 0 {
			m = max(m, d+grace)
		}
	}
	return m
}

// sampleRSS keeps the peak RSS of pid in *peak until the returned function
// is called.
func sampleRSS(pid int, peak *int64) (stop func()) {
	if pid <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			*peak = max(*peak, readStatus(pid, "VmRSS:"))
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// readStatus returns a size field (such as "VmRSS:") of /proc/pid/status in
// bytes, 0 if unknown.
func readStatus(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func healthy(base string) bool {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(strings.TrimRight(base, "/") + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// slowConn keeps one slow connection to addr open until ctx ends, opening
// a new one whenever the edge closes it, as an attacker would. A slow
// header connection sends a line of headers every lineInterval and never
// ends them; a slow body sends whole headers (with a valid key) and then
// the body a byte at a time.
func slowConn(ctx context.Context, addr, key string, body bool, i int, st *slowStats) {
	d := net.Dialer{Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.mu.Lock()
			st.dialErrs++
			st.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		st.mu.Lock()
		st.opened++
		st.mu.Unlock()
		opened := time.Now()
		closed := make(chan struct{})
		go func() {
			// Whatever the edge answers, the end of the stream is it
			// closing the connection.
			_, _ = io.Copy(io.Discard, c)
			close(closed)
		}()
		head := "POST /v1/chat/completions HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\n"
		if body {
			head += "Authorization: Bearer " + key + "\r\nContent-Length: 4096\r\n\r\n"
		}
		_, err = io.WriteString(c, head)
		tick := time.NewTicker(lineInterval)
		for n := 0; err == nil; n++ {
			select {
			case <-closed:
				err = io.EOF
				continue
			case <-ctx.Done():
			case <-tick.C:
				if body {
					_, err = c.Write([]byte{'{'})
				} else {
					_, err = fmt.Fprintf(c, "X-Slow-%d-%d: waiting\r\n", i, n)
				}
				continue
			}
			break
		}
		tick.Stop()
		life := time.Since(opened)
		_ = c.Close()
		<-closed
		// A failed write means the edge had closed the connection too.
		st.add(err != nil, life)
	}
}

// deepBodies are two chat requests nested depth deep: in the messages
// array as arrays, and in a message's content as objects.
func deepBodies(depth int) [2][]byte {
	var a, o bytes.Buffer
	a.WriteString(`{"model":"gpt-4o-mini","messages":`)
	a.WriteString(strings.Repeat("[", depth))
	a.WriteString(strings.Repeat("]", depth))
	a.WriteString(`}`)
	o.WriteString(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":`)
	o.WriteString(strings.Repeat(`{"a":`, depth))
	o.WriteString(`1`)
	o.WriteString(strings.Repeat(`}`, depth))
	o.WriteString(`}]}`)
	return [2][]byte{a.Bytes(), o.Bytes()}
}

// sendDeep sends deep JSON bodies to t at rate per second until ctx ends.
func sendDeep(ctx context.Context, t target, depth, rate int, out *outcomes[deepOutcome]) {
	if rate <= 0 {
		return
	}
	bodies := deepBodies(depth)
	c := client(32)
	// A finished phase leaves no idle connections open on the edge for
	// the next one to pay for.
	defer c.CloseIdleConnections()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Go(func() {
			req, err := chatRequest(ctx, t, bodies[n%2])
			if err != nil {
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					out.add(deepOther, err.Error())
				}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			if ctx.Err() != nil && err != nil {
				return
			}
			out.add(classifyDeep(resp.StatusCode, b, err), fmt.Sprintf("status %d: %.200s", resp.StatusCode, b))
		})
	}
}

// longStream asks for one streamed Anthropic message of model
// fake-long-line and reads it to its end, measuring lines without keeping
// them. It goes to the Messages route so that the edge's chat completions
// latency histogram holds only the legitimate requests.
func longStream(ctx context.Context, t target) streamSeen {
	var s streamSeen
	b := fmt.Appendf(nil, `{"model":"fake-long-line","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"long line %d-%d"}]}`, runID, seq.Add(1))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(t.url, "/")+"/v1/messages", bytes.NewReader(b))
	if err != nil {
		s.err = err
		return s
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", t.key)
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := longClient.Do(req)
	if err != nil {
		s.err = err
		return s
	}
	defer resp.Body.Close()
	s.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		s.body, s.err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return s
	}
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	line := 0
	for {
		chunk, err := rd.ReadSlice('\n')
		if line == 0 {
			switch {
			case bytes.HasPrefix(chunk, []byte("event: message_stop")):
				s.done = true
			case bytes.HasPrefix(chunk, []byte("event: error")):
				s.errorEvent = true
			}
		}
		line += len(chunk)
		if err == bufio.ErrBufferFull {
			continue
		}
		s.longest = max(s.longest, line)
		line = 0
		if err == io.EOF {
			return s
		}
		if err != nil {
			s.err = err
			return s
		}
	}
}

var longClient = client(8)

func describeStream(s streamSeen) string {
	if s.status != http.StatusOK {
		return fmt.Sprintf("status %d: %.200s", s.status, s.body)
	}
	return fmt.Sprintf("longest line %d bytes, message_stop %v, error event %v, read error %v", s.longest, s.done, s.errorEvent, s.err)
}

// verdict is one judged criterion of the hostile phase.
type verdict struct {
	pass   bool
	what   string
	detail string
}

func (v verdict) String() string {
	s := "FAIL"
	if v.pass {
		s = "PASS"
	}
	return s + "  " + v.what + ": " + v.detail
}

// judge turns the hostile phase's measurements into verdicts.
func judge(r *hostileResult) []verdict {
	o := r.opts
	var vs []verdict
	b99, a99 := r.baseline.pct(0.99), r.attack.pct(0.99)
	q := ratio(a99, b99)
	vs = append(vs, verdict{b99 > 0 && q <= 2, "legitimate p99 under attack ≤ 2× baseline",
		fmt.Sprintf("%.2f× (%s under attack, %s alone)", q, a99.Round(time.Microsecond), b99.Round(time.Microsecond))})
	if r.baseOwn.total() > 0 && r.attackOwn.total() > 0 {
		// The same rule on the edge's own share of the latency: apart
		// from the stand-in provider and the load generator, which share
		// the machine and the attack's work with it.
		b, a := r.baseOwn.quantile(0.99), r.attackOwn.quantile(0.99)
		q := ratio(a, b)
		vs = append(vs, verdict{b > 0 && q <= 2, "edge's own added p99 under attack ≤ 2× baseline",
			fmt.Sprintf("%.2f× (%s under attack, %s alone)", q, a.Round(time.Microsecond), b.Round(time.Microsecond))})
	}
	vs = append(vs, verdict{r.attack.n > 0 && r.attack.errors == 0, "legitimate requests under attack all answered",
		fmt.Sprintf("%d errors of %d", r.attack.errors, r.attack.n)})
	if o.pid > 0 {
		vs = append(vs, verdict{r.peakRSS > 0 && r.peakRSS <= o.maxRSS, "edge memory bounded under attack",
			fmt.Sprintf("peak RSS %.1f MiB (limit %.0f MiB; %.1f MiB alone)", mib(r.peakRSS), mib(o.maxRSS), mib(r.baseRSS))})
	}
	if o.deepRate > 0 {
		n, other := r.deep.total(), r.deep.count(deepOther)
		d := fmt.Sprintf("%d sent: %d refused with 400 in the provider's error shape, %d forwarded, %d other",
			n, r.deep.count(deepRejected), r.deep.count(deepForwarded), other)
		if other > 0 {
			d += " (first: " + r.deep.example(deepOther) + ")"
		}
		vs = append(vs, verdict{n > 0 && other == 0, fmt.Sprintf("%d-deep JSON answered clearly", o.depth), d})
	}
	if o.longLines > 0 {
		n, broken := r.long.total(), r.long.count(longBroken)
		d := fmt.Sprintf("%d streams: %d delivered whole, %d refused with a clear error, %d broken",
			n, r.long.count(longDelivered), r.long.count(longRefused), broken)
		if broken > 0 {
			d += " (first: " + r.long.example(longBroken) + ")"
		}
		vs = append(vs, verdict{n > 0 && broken == 0, fmt.Sprintf("%d-byte SSE line delivered or clearly refused", o.longLineBytes), d})
	}
	if o.slowloris > 0 {
		vs = append(vs, judgeSlow(&r.slowHeaders, "slowloris headers cut by the header timeout", o.headerTimeout))
	}
	if o.slowBodies > 0 {
		vs = append(vs, judgeSlow(&r.slowBody, "slow bodies cut by the read timeout", o.readTimeout))
	}
	vs = append(vs, verdict{r.alive, "edge still serving after the attack", map[bool]string{true: "/healthz answered 200", false: "/healthz did not answer, or the process is gone"}[r.alive]})
	return vs
}

// judgeSlow passes when the edge closed every slow connection within its
// timeout (plus grace), and none outlived it. A timeout of 0 means the edge
// has none: any connection it left open fails.
func judgeSlow(st *slowStats, what string, timeout time.Duration) verdict {
	opened, dialErrs, closed, open := st.summary()
	var held int
	for _, a := range open {
		if timeout <= 0 || a > timeout+grace {
			held++
		}
	}
	late := 0
	for _, l := range closed {
		if timeout > 0 && l > timeout+grace {
			late++
		}
	}
	d := fmt.Sprintf("%d opened, %d closed by the edge", opened, len(closed))
	if len(closed) > 0 {
		d += fmt.Sprintf(" after p50 %s, max %s", pctOf(closed, 0.5).Round(10*time.Millisecond), closed[len(closed)-1].Round(10*time.Millisecond))
	}
	if len(open) > 0 {
		d += fmt.Sprintf(", %d still open at the end (oldest %s)", len(open), open[len(open)-1].Round(10*time.Millisecond))
	}
	if dialErrs > 0 {
		d += fmt.Sprintf(", %d refused at connect", dialErrs)
	}
	if timeout > 0 {
		d += fmt.Sprintf("; timeout %s", timeout)
		what += " (" + timeout.String() + ")"
	} else {
		d += "; the edge has no such timeout"
	}
	return verdict{opened > 0 && len(closed) > 0 && held == 0 && late == 0, what, d}
}

// reportHostile prints the hostile phase and one verdict per criterion.
// The bench reports; it does not fail on a verdict.
func reportHostile(w io.Writer, r *hostileResult) {
	o := r.opts
	fmt.Fprintf(w, "\nhostile input on the edge's client listener, legitimate load %d req/s of distinct requests for %s each:\n", o.rate, measureFor(o))
	row := func(name string, x result) {
		fmt.Fprintf(w, "  %-14s p50 %10s   p99 %10s   %6d requests, %d errors\n", name, x.pct(0.5).Round(time.Microsecond), x.pct(0.99).Round(time.Microsecond), x.n, x.errors)
	}
	row("edge alone", r.baseline)
	row("under attack", r.attack)
	if r.baseUp.total() > 0 && r.attackUp.total() > 0 {
		// The stand-in provider and the load generator share the machine
		// with the edge: when the end-to-end p99 rises, this tells whether
		// the provider's answers slowed down too.
		fmt.Fprintf(w, "  provider time of these requests as the edge saw it (codex_edge_upstream_latency_seconds, buckets from 5ms): p99 %s alone, %s under attack\n",
			r.baseUp.quantile(0.99).Round(time.Microsecond), r.attackUp.quantile(0.99).Round(time.Microsecond))
	}
	fmt.Fprintf(w, "  attack: %d slowloris connections (a header line a second, never ended), %d slow bodies (a byte a second), %d-deep JSON bodies at %d/s, %d streams at a time of a %d-byte SSE line\n",
		o.slowloris, o.slowBodies, o.depth, o.deepRate, o.longLines, o.longLineBytes)
	if o.pid > 0 {
		fmt.Fprintf(w, "  edge RSS: peak %.1f MiB alone, %.1f MiB under attack; VmHWM over the process's life %.1f MiB\n", mib(r.baseRSS), mib(r.peakRSS), mib(r.hwm))
	}
	for _, v := range judge(r) {
		fmt.Fprintln(w, v)
	}
}
