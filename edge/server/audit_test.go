package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/sse"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/storetest"
)

func newCanary(tag string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return "CANARY" + tag + hex.EncodeToString(b)
}

// auditEvents waits until the org has n audit events and returns them.
func auditEvents(t *testing.T, st edge.AuditStore, orgID string, n int) []edge.AuditEvent {
	t.Helper()
	var evs []edge.AuditEvent
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%d audit events", n), func() bool {
		var err error
		if evs, err = st.AuditEvents(context.Background(), orgID, edge.AuditQuery{Limit: 100000}); err != nil {
			t.Fatal(err)
		}
		return len(evs) >= n
	})
	if len(evs) != n {
		t.Fatalf("%d audit events, want %d", len(evs), n)
	}
	return evs
}

// sdkCalls makes one request of each shape through the edge with the
// official SDKs, each carrying its canary in the prompt; it returns what
// each answer's text was.
func sdkCalls(t *testing.T, oc openai.Client, ac anthropic.Client, canaries []string) {
	t.Helper()
	ctx := ctxT(t)
	chat := func(c string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("say " + c)}}
	}
	r, err := oc.Chat.Completions.New(ctx, chat(canaries[0]))
	if err != nil || !strings.Contains(r.Choices[0].Message.Content, canaries[0]) {
		t.Fatalf("chat: %v %+v", err, r)
	}
	s := oc.Chat.Completions.NewStreaming(ctx, chat(canaries[1]))
	var text strings.Builder
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := s.Err(); err != nil || !strings.Contains(text.String(), canaries[1]) {
		t.Fatalf("chat stream: %v %q", err, text.String())
	}
	resp, err := oc.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4.1", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("say " + canaries[2])}})
	if err != nil || !strings.Contains(resp.OutputText(), canaries[2]) {
		t.Fatalf("responses: %v", err)
	}
	ms := ac.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 64,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("say " + canaries[3]))}})
	var msg anthropic.Message
	for ms.Next() {
		if err := msg.Accumulate(ms.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := ms.Err(); err != nil || len(msg.Content) == 0 || !strings.Contains(msg.Content[0].Text, canaries[3]) {
		t.Fatalf("messages stream: %v %+v", err, msg.Content)
	}
}

// checkFullContent opens every event's content and finds each canary in
// the request and the response of its own event, verbatim.
func checkFullContent(t *testing.T, keys audit.Opener, evs []edge.AuditEvent, canaries []string) {
	t.Helper()
	for i, c := range canaries {
		found := false
		for _, e := range evs {
			content, err := audit.OpenContent(context.Background(), keys, e)
			if err != nil {
				t.Fatalf("event %s: %v", e.ID, err)
			}
			if strings.Contains(string(content.Request), c) {
				found = true
				if !strings.Contains(string(content.Response), c) && !strings.Contains(streamText(content.Response), c) {
					t.Errorf("canary %d: in the request of %s, not in its response %q", i, e.ID, content.Response)
				}
			}
		}
		if !found {
			t.Errorf("canary %d in no event's request", i)
		}
	}
}

// streamText joins the text deltas of a stream's events: a stream carries
// the answer in pieces.
func streamText(stream []byte) string {
	var out strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range []string{"delta", "choices"} {
				walk(v[k])
			}
			for _, k := range []string{"content", "text"} {
				if s, ok := v[k].(string); ok {
					out.WriteString(s)
				}
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	rd := sse.NewReader(bytes.NewReader(stream))
	for {
		ev, err := rd.Next()
		if err != nil {
			return out.String()
		}
		var v any
		if json.Unmarshal(ev.Data, &v) == nil {
			walk(v)
		}
	}
}

// TestAuditFullEmbedded drives the edge with the official SDKs at level
// full on the embedded store: every request, JSON and stream, OpenAI and
// Anthropic, has an event whose content holds its prompt and answer
// verbatim, the chain verifies, and no canary is in any file of the data
// directory.
func TestAuditFullEmbedded(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	if err := h.store.SetAuditLevel(context.Background(), edge.AuditSetting{OrgID: tn.orgID, Level: edge.AuditFull}); err != nil {
		t.Fatal(err)
	}
	h.restart(nil) // the level, set from outside, is read as the org loads
	canaries := []string{newCanary("a"), newCanary("b"), newCanary("c"), newCanary("d")}
	sdkCalls(t, h.openai(tn.key), h.anthropic(tn.key), canaries)

	evs := auditEvents(t, h.store, tn.orgID, 4)
	checkFullContent(t, h.srv.Keyring(), evs, canaries)
	r, err := audit.Verify(context.Background(), h.store, tn.orgID, h.srv.Keyring(), audit.StoredSecrets(h.store, h.srv.Keyring()))
	if err != nil || r.Break != nil || r.ContentChecked != 4 {
		t.Fatalf("Verify = %+v, %v", r, err)
	}
	h.records(tn.orgID, 4)
	storetest.ScanDirForCanaries(t, h.cfg.DataDir, append(canaries, tn.key, tn.providerKey)...)
}

// TestAuditLevelsByKey: the level of a key wins over its org's, changes
// apply to a running edge through the change feed, and at level hash the
// digests are those of the prompt and answer the client exchanged.
func TestAuditLevelsByKey(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	ctx := context.Background()
	otherKey, otherSecret := h.addKey(tn.orgID)
	if err := h.store.SetAuditLevel(ctx, edge.AuditSetting{OrgID: tn.orgID, Level: edge.AuditHash}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.SetAuditLevel(ctx, edge.AuditSetting{OrgID: tn.orgID, KeyID: otherKey, Level: edge.AuditNone}); err != nil {
		t.Fatal(err)
	}
	// The running edge picks the levels up within CODEX_CHANGE_POLL.
	testutil.Eventually(t, 10*time.Second, "the levels to apply", func() bool {
		o, err := h.srv.Directory().Org(ctx, tn.orgID)
		return err == nil && o.AuditLevel(tn.keyID) == edge.AuditHash && o.AuditLevel(otherKey) == edge.AuditNone
	})
	oc := h.openai(tn.key, option.WithHeader("Cache-Control", "no-store"))
	if _, err := oc.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}); err != nil {
		t.Fatal(err)
	}
	other := h.openai(otherSecret)
	if _, err := other.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}); err != nil {
		t.Fatal(err)
	}
	evs := auditEvents(t, h.store, tn.orgID, 2)
	levels := map[string]edge.AuditLevel{}
	for _, e := range evs {
		m, err := audit.ParseMeta(e.Meta)
		if err != nil {
			t.Fatal(err)
		}
		levels[m.KeyID] = m.Level
		if m.Level == edge.AuditHash && (len(e.RequestDigest) != 32 || len(e.ResponseDigest) != 32 || e.Content != nil) {
			t.Errorf("hash event %+v", e)
		}
		if m.Level == edge.AuditNone && (e.RequestDigest != nil || e.Content != nil) {
			t.Errorf("none event %+v", e)
		}
	}
	if levels[tn.keyID] != edge.AuditHash || levels[otherKey] != edge.AuditNone {
		t.Fatalf("levels by key %v", levels)
	}
}

// answerCanary wraps the fake provider so that every answer's text starts
// with canary, a word no client sent: a scan then looks for the answer
// apart from the prompt it echoes. The answer is held whole, so a stream
// reaches the edge at once.
func answerCanary(provider http.Handler, canary string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		provider.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(bytes.ReplaceAll(rec.Body.Bytes(), []byte("echo: "), []byte("echo: "+canary+" ")))
	})
}

// TestAuditFullNoContentAtRest is the test of content at rest with
// everything on at once: Postgres store, Redis cache with persistence, org
// and key memories, audit level full. The official SDKs send one request
// of each shape twice (miss, then hit), each prompt with its canary, every
// answer with another. `audit show` (its admin API) returns each prompt
// and answer verbatim, so they were captured; yet no canary, memory text
// or secret is in the Postgres heap files or WAL after a checkpoint, in
// Redis's RDB dump or AOF, or in the edge's data directory, as is, hex or
// base64. A canary planted in plaintext in each of them is found, so the
// scans can fail.
func TestAuditFullNoContentAtRest(t *testing.T) {
	ctx := context.Background()
	c := pgtest.NewCluster(t)
	owner, app := c.FreshDB(t)
	rp := startRedis(t)
	fake := fakeprovider.New(fakeprovider.Options{})
	answer := newCanary("answer")
	f := newPGFleetProvider(t, app, answerCanary(fake, answer))
	var dataDir string
	e := f.start(func(cfg *config.Config) {
		cfg.CacheEnabled, cfg.RedisURL = true, rp.url()
		dataDir = cfg.DataDir
	})
	org := f.addOrg("acme")
	keyID, key := f.addKey(org)
	admin := "http://" + e.srv.AdminAddr() + "/admin/v1"
	jsonType := map[string]string{"Content-Type": "application/json"}
	texts, memCanaries := memoryCanaries(3)
	for i, m := range []struct{ keyID, name string }{{"", "style"}, {"", "style"}, {keyID, "tone"}} {
		body, _ := json.Marshal(map[string]string{"text": texts[i]})
		if st, out := adminReq(t, "PUT", admin+"/orgs/acme/memories/"+m.name+"?key_id="+m.keyID, "", jsonType, string(body)); st != 200 {
			t.Fatalf("set memory: %d %s", st, out)
		}
	}
	if st, out := adminReq(t, "PUT", admin+"/orgs/acme/audit/level", "", jsonType, `{"level":"full"}`); st != 200 {
		t.Fatalf("set the level: %d %s", st, out)
	}

	var (
		mu   sync.Mutex
		seen []string // cache status and memories of each answer
	)
	logHeaders := func(r *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
		resp, err := next(r)
		if resp != nil {
			mu.Lock()
			seen = append(seen, resp.Header.Get("X-Codex-Cache")+" "+resp.Header.Get("X-Codex-Memory"))
			mu.Unlock()
		}
		return resp, err
	}
	oc := openai.NewClient(option.WithBaseURL(e.base+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0), option.WithMiddleware(logHeaders))
	ac := anthropic.NewClient(aoption.WithBaseURL(e.base), aoption.WithAPIKey(key), aoption.WithMaxRetries(0), aoption.WithMiddleware(logHeaders))
	prompts := []string{newCanary("pa"), newCanary("pb"), newCanary("pc"), newCanary("pd")}
	for _, want := range []string{"miss", "hit"} {
		sdkCalls(t, oc, ac, prompts)
		mu.Lock()
		got := seen
		seen = nil
		mu.Unlock()
		if w := slices.Repeat([]string{want + " style@2,tone@1"}, len(prompts)); !slices.Equal(got, w) {
			t.Fatalf("answers %q, want %q", got, w)
		}
	}
	if reqs := fake.Requests(); len(reqs) != len(prompts) {
		t.Fatalf("the provider got %d requests, want %d (the rest are hits)", len(reqs), len(prompts))
	} else {
		for _, r := range reqs {
			if !bytes.Contains(r.Body, []byte(memCanaries[1])) || !bytes.Contains(r.Body, []byte(memCanaries[2])) {
				t.Fatalf("the provider did not receive the memories: %s", r.Body)
			}
		}
	}

	// audit show: each prompt, on its miss and its hit, with its answer.
	shown := map[string][]string{} // prompt canary → cache status of its events
	for _, ev := range auditEvents(t, f.admin, org, 4+2*len(prompts)) {
		if it, err := audit.ItemOf(ev); err != nil || it.Kind != edge.AuditRequest {
			continue
		}
		st, body := adminReq(t, "GET", admin+"/audit/events/"+ev.ID, "", nil, "")
		var s audit.Shown
		if err := json.Unmarshal([]byte(body), &s); err != nil || st != 200 || s.Request == nil || s.Response == nil {
			t.Fatalf("show %s: %d %s", ev.ID, st, body)
		}
		if s.Level != edge.AuditFull || s.Memory != "style@2,tone@1" {
			t.Errorf("event %s: level %q, memory %q", ev.ID, s.Level, s.Memory)
		}
		text := *s.Response + streamText([]byte(*s.Response))
		for _, p := range prompts {
			if strings.Contains(*s.Request, p) {
				shown[p] = append(shown[p], s.Cache)
				if !strings.Contains(text, answer+" say "+p) {
					t.Errorf("event %s: the answer shown is not the one sent: %q", ev.ID, *s.Response)
				}
			}
		}
	}
	for _, p := range prompts {
		if got := shown[p]; !slices.Equal(got, []string{"miss", "hit"}) {
			t.Errorf("prompt %s shown in events %q, want miss and hit", p, got)
		}
	}
	countRecords(t, f.admin, org, 2*len(prompts))

	// Positive controls: a canary written in plaintext to each store's
	// files must be found.
	control := newCanary("control")
	conn, err := pgx.Connect(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE scan_control (v text); INSERT INTO scan_control VALUES ('`+control+`')`); err != nil {
		t.Fatal(err)
	}
	if err := rp.client().Set(ctx, "scan-control", control, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "scan-control"), []byte(control), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := slices.Concat(prompts, []string{answer}, memCanaries, []string{key, f.env["PROVIDER_KEY"], f.env["CODEX_BYOK_KEY"]})
	scan := func(what, dir string, entries bool) {
		t.Helper()
		if !storetest.FindRaw(t, dir, control)[control] {
			t.Fatalf("%s: the canary planted in plaintext is not found: the scan would prove nothing", what)
		}
		// The org's rows and entries are there, only never their content.
		if found, err := storetest.FindCanaries(dir, org); entries && (err != nil || len(found) == 0) {
			t.Fatalf("%s: no data of the org (%v): the scan would prove nothing", what, err)
		}
		storetest.ScanDirForCanaries(t, dir, secret...)
	}
	c.Checkpoint()
	scan("Postgres heap and WAL", c.DataDir, true)
	scan("edge data directory", dataDir, false)
	// The RDB dump and the AOF as appended, then the AOF rewritten.
	if err := rp.client().Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	scan("Redis dump and AOF", rp.dir, true)
	rp.persist(ctx)
	scan("Redis dump and rewritten AOF", rp.dir, true)
}

// TestAuditTwoEdgesOneChain: two edges on one Postgres database record
// one org's requests at once, at every level: the org's chain is one line
// with every event, and verifies.
func TestAuditTwoEdgesOneChain(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	f := newPGFleet(t, app)
	org := f.addOrg("acme")
	ctx := context.Background()
	keys := map[edge.AuditLevel]string{}
	for _, l := range []edge.AuditLevel{edge.AuditNone, edge.AuditHash, edge.AuditFull} {
		id, secret := f.addKey(org)
		keys[l] = secret
		if err := f.admin.SetAuditLevel(ctx, edge.AuditSetting{OrgID: org, KeyID: id, Level: l}); err != nil {
			t.Fatal(err)
		}
	}
	edges := []*pgEdge{f.start(nil), f.start(nil)}
	const each = 30
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		fail []string
	)
	for _, e := range edges {
		for _, key := range keys {
			wg.Go(func() {
				for i := range each {
					if st, err := chat(e.base, key, fmt.Sprintf("request %d", i)); err != nil || st != 200 {
						mu.Lock()
						fail = append(fail, fmt.Sprintf("%d %v", st, err))
						mu.Unlock()
					}
				}
			})
		}
	}
	wg.Wait()
	if len(fail) > 0 {
		t.Fatalf("%d requests failed: %v", len(fail), fail[0])
	}
	n := len(edges) * len(keys) * each
	auditEvents(t, f.admin, org, n)
	r, err := audit.Verify(ctx, f.admin, org, edges[0].srv.Keyring(), audit.StoredSecrets(f.admin, edges[0].srv.Keyring()))
	if err != nil || r.Break != nil || r.Events != int64(n) || r.ContentChecked != int64(len(edges)*each) {
		t.Fatalf("Verify = %+v, %v", r, err)
	}
}

// TestAuditStoreDownFull stops Postgres under an org at level full: its
// requests are answered 503 audit_unavailable and nothing else, no
// answer reaches a client without its event; once Postgres is back,
// requests are answered again, each 200 with its event stored.
func TestAuditStoreDownFull(t *testing.T) {
	c := pgtest.NewCluster(t)
	_, app := c.FreshDB(t)
	f := newPGFleet(t, app)
	e := f.start(nil)
	org := f.addOrg("acme")
	_, key := f.addKey(org)
	// A second key at level hash: its events go through the queue, with
	// no synchronous write, so it is answered while the store is down.
	hashID, hashKey := f.addKey(org)
	if err := f.admin.SetAuditLevel(context.Background(), edge.AuditSetting{OrgID: org, Level: edge.AuditFull}); err != nil {
		t.Fatal(err)
	}
	if err := f.admin.SetAuditLevel(context.Background(), edge.AuditSetting{OrgID: org, KeyID: hashID, Level: edge.AuditHash}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the levels to apply", func() bool {
		o, err := e.srv.Directory().Org(context.Background(), org)
		return err == nil && o.AuditLevel("") == edge.AuditFull && o.AuditLevel(hashID) == edge.AuditHash
	})
	// The org may have been loaded before the edge read the level's
	// change from the feed, which then drops it: with the store stopped
	// it could not be loaded again, and requests would fail for that,
	// not for the audit log. Wait until every change so far is applied.
	last := lastChange(t, f.admin)
	testutil.Eventually(t, 10*time.Second, "the change feed to be applied", func() bool {
		return e.srv.Directory().Applied() >= last
	})
	oc := openai.NewClient(option.WithBaseURL(e.base+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0),
		option.WithHeader("Cache-Control", "no-store"))
	params := func(p string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(p)}}
	}
	if _, err := oc.Chat.Completions.New(ctxT(t), params("warm up")); err != nil {
		t.Fatal(err)
	}
	hc := openai.NewClient(option.WithBaseURL(e.base+"/v1/"), option.WithAPIKey(hashKey), option.WithMaxRetries(0),
		option.WithHeader("Cache-Control", "no-store"))
	if _, err := hc.Chat.Completions.New(ctxT(t), params("warm up hash")); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	const hashDown = 3
	for i := range hashDown {
		if _, err := hc.Chat.Completions.New(ctxT(t), params(fmt.Sprintf("hash while down %d", i))); err != nil {
			t.Fatalf("level hash, request %d with the audit store down: %v (its event should wait in the queue)", i, err)
		}
	}
	for i := range 5 {
		canary := newCanary(fmt.Sprintf("down%d", i))
		r, err := oc.Chat.Completions.New(ctxT(t), params(canary))
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != 503 || ae.Code != "audit_unavailable" {
			t.Fatalf("request %d with the audit store down: %v %+v", i, err, r)
		}
		if strings.Contains(ae.RawJSON(), canary) {
			t.Fatalf("the 503 carries the answer: %s", ae.RawJSON())
		}
		// A stream: never a complete answer.
		s := oc.Chat.Completions.NewStreaming(ctxT(t), params(canary))
		var text strings.Builder
		for s.Next() {
			if ch := s.Current(); len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		if s.Err() == nil {
			t.Fatalf("stream %d completed with the audit store down: %q", i, text.String())
		}
		if i == 0 {
			time.Sleep(audit.FailFast) // the next ones try the store again
		}
	}
	c.Start()
	ok := 0
	testutil.Eventually(t, 30*time.Second, "requests answered again", func() bool {
		if _, err := oc.Chat.Completions.New(ctxT(t), params("after")); err == nil {
			ok++
		}
		return ok > 0
	})
	for range 3 {
		if _, err := oc.Chat.Completions.New(ctxT(t), params("after")); err != nil {
			t.Fatal(err)
		}
		ok++
	}
	// Every answered request, and only those, has its event: the warm-ups,
	// the ones at level hash during the outage (queued, written once the
	// store was back) and the ones at level full after it.
	evs := auditEvents(t, f.admin, org, 2+hashDown+ok)
	for _, ev := range evs {
		if m, _ := audit.ParseMeta(ev.Meta); m.Status != 200 {
			t.Errorf("event %s has status %d", ev.ID, m.Status)
		}
	}
	if r, err := audit.Verify(context.Background(), f.admin, org, e.srv.Keyring(), audit.StoredSecrets(f.admin, e.srv.Keyring())); err != nil || r.Break != nil {
		t.Fatalf("Verify = %+v, %v", r, err)
	}
}

// TestAuditAdminAPI: the admin API sets and reads levels (applied at once
// on this instance), lists events, shows content verbatim, verifies the
// chain, and records its own changes with the interface and the caller.
func TestAuditAdminAPI(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	admin := "http://" + h.srv.AdminAddr() + "/admin/v1"
	jsonType := map[string]string{"Content-Type": "application/json"}

	for _, c := range []struct{ body, want string }{
		{`{"level":"most"}`, "400"},
		{`{"level":"full","key_id":"key_nope"}`, "404"},
		{`{"level":"full","extra":1}`, "400"},
	} {
		if st, body := adminReq(t, "PUT", admin+"/orgs/acme/audit/level", "", jsonType, c.body); fmt.Sprint(st) != c.want {
			t.Errorf("PUT level %s: %d %s, want %s", c.body, st, body, c.want)
		}
	}
	if st, body := adminReq(t, "PUT", admin+"/orgs/nope/audit/level", "", jsonType, `{"level":"full"}`); st != 404 {
		t.Errorf("unknown org: %d %s", st, body)
	}
	if st, body := adminReq(t, "PUT", admin+"/orgs/acme/audit/level", "", jsonType, `{"level":"full"}`); st != 200 {
		t.Fatalf("PUT level: %d %s", st, body)
	}
	// Applied at once here: the very next request is at full.
	canary := newCanary("api")
	oc := h.openai(tn.key)
	if _, err := oc.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("say " + canary)}}); err != nil {
		t.Fatal(err)
	}
	if st, body := adminReq(t, "GET", admin+"/orgs/"+tn.orgID+"/audit/level", "", nil, ""); st != 200 || !strings.Contains(body, `"level":"full"`) {
		t.Fatalf("GET level: %d %s", st, body)
	}
	st, body := adminReq(t, "GET", admin+"/orgs/acme/audit/events", "", nil, "")
	var list struct{ Events []audit.Item }
	if err := json.Unmarshal([]byte(body), &list); err != nil || st != 200 || len(list.Events) != 2 {
		t.Fatalf("events: %d %s", st, body)
	}
	if a := list.Events[0]; a.Kind != edge.AuditAdmin || a.Action != "audit.level" || a.Via != "admin-api" || a.Actor != "127.0.0.1" {
		t.Errorf("admin event %+v", a)
	}
	req := list.Events[1]
	if req.Kind != edge.AuditRequest || req.Level != edge.AuditFull || req.Content != "sealed" {
		t.Fatalf("request event %+v", req)
	}
	st, body = adminReq(t, "GET", admin+"/audit/events/"+req.ID, "", nil, "")
	var shown audit.Shown
	if err := json.Unmarshal([]byte(body), &shown); err != nil || st != 200 || shown.Request == nil || !strings.Contains(*shown.Request, canary) {
		t.Fatalf("show: %d %s", st, body)
	}
	if st, body := adminReq(t, "GET", admin+"/orgs/acme/audit/verify", "", nil, ""); st != 200 || !strings.Contains(body, `"ok":true`) || !strings.Contains(body, `"events":2`) {
		t.Fatalf("verify: %d %s", st, body)
	}
	if st, _ := adminReq(t, "GET", admin+"/orgs/acme/audit/events?limit=0", "", nil, ""); st != 400 {
		t.Errorf("limit 0: %d", st)
	}
	// A key revoked through the admin API is recorded.
	if st, body := adminReq(t, "POST", admin+"/keys/"+tn.keyID+"/revoke", "", jsonType, ""); st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	_, body = adminReq(t, "GET", admin+"/orgs/acme/audit/events?after_seq=2", "", nil, "")
	if !strings.Contains(body, `"action":"keys.revoke"`) || !strings.Contains(body, `"target":"`+tn.keyID+`"`) {
		t.Fatalf("revoke not recorded: %s", body)
	}
}

// TestAuditAdminAPIChanges: every change made through the admin API adds
// exactly one admin event to its org's chain, with the interface, the
// caller and what changed; a refused change adds none.
func TestAuditAdminAPIChanges(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	admin := "http://" + h.srv.AdminAddr() + "/admin/v1"
	jsonType := map[string]string{"Content-Type": "application/json"}
	memText := newCanary("apimem")
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		action, target           string // action "": no event
		details                  map[string]string
	}{
		{"org limit", "POST", "/orgs/acme/limits", `{"rpm":60}`, 200, "limits.set", "", map[string]string{"rpm": "60", "tpm": "0"}},
		{"org limit, tpm added", "POST", "/orgs/acme/limits", `{"tpm":1000}`, 200, "limits.set", "", map[string]string{"rpm": "60", "tpm": "1000"}},
		{"key limit", "POST", "/orgs/" + tn.orgID + "/limits", `{"key_id":"` + tn.keyID + `","rpm":5,"tpm":50}`, 200, "limits.set", tn.keyID, map[string]string{"rpm": "5", "tpm": "50"}},
		{"org limit removed", "POST", "/orgs/acme/limits", `{"rpm":0,"tpm":0}`, 200, "limits.set", "", map[string]string{"rpm": "0", "tpm": "0"}},
		{"limit refused", "POST", "/orgs/acme/limits", `{}`, 400, "", "", nil},
		{"org budget", "POST", "/orgs/acme/budgets", `{"usd":"12.50","period":"day"}`, 200, "budgets.set", "", map[string]string{"period": "day", "cap_usd": "12.5"}},
		{"key budget", "POST", "/orgs/acme/budgets", `{"key_id":"` + tn.keyID + `","usd":"100","period":"month"}`, 200, "budgets.set", tn.keyID, map[string]string{"period": "month", "cap_usd": "100"}},
		{"org budget removed", "POST", "/orgs/acme/budgets", `{"usd":"0","period":"day"}`, 200, "budgets.set", "", map[string]string{"period": "day", "cap_usd": "0"}},
		{"budget refused", "POST", "/orgs/acme/budgets", `{"usd":"1","period":"week"}`, 400, "", "", nil},
		{"memory set", "PUT", "/orgs/acme/memories/style?key_id=" + tn.keyID, `{"text":"` + memText + `"}`, 200, "memory.set", "style",
			map[string]string{"key_id": tn.keyID, "version": "1", "bytes": fmt.Sprint(len(memText))}},
		{"memory removed", "DELETE", "/orgs/acme/memories/style?key_id=" + tn.keyID, "", 200, "memory.rm", "style", map[string]string{"key_id": tn.keyID}},
		{"memory removal refused", "DELETE", "/orgs/acme/memories/style", "", 404, "", "", nil},
	} {
		before := len(adminEventsNow(t, h.store, tn.orgID))
		if st, body := adminReq(t, c.method, admin+c.path, "", jsonType, c.body); st != c.status {
			t.Fatalf("%s: %d %s, want %d", c.name, st, body, c.status)
		}
		evs := adminEventsNow(t, h.store, tn.orgID)
		if c.action == "" {
			if len(evs) != before {
				t.Errorf("%s: refused, but %d events were added", c.name, len(evs)-before)
			}
			continue
		}
		if len(evs) != before+1 {
			t.Fatalf("%s: %d events added, want 1", c.name, len(evs)-before)
		}
		it, err := audit.ItemOf(evs[len(evs)-1])
		if err != nil {
			t.Fatal(err)
		}
		if it.Kind != edge.AuditAdmin || it.Action != c.action || it.Target != c.target || it.Via != "admin-api" || it.Actor != "127.0.0.1" || !maps.Equal(it.Details, c.details) {
			t.Errorf("%s: event %+v; want %s on %q with %v by admin-api from 127.0.0.1", c.name, it, c.action, c.target, c.details)
		}
		if strings.Contains(string(evs[len(evs)-1].Meta), memText) {
			t.Errorf("%s: the event holds the memory's text", c.name)
		}
	}
	if r, err := audit.Verify(context.Background(), h.store, tn.orgID, h.srv.Keyring(), audit.StoredSecrets(h.store, h.srv.Keyring())); err != nil || r.Break != nil {
		t.Fatalf("Verify = %+v, %v", r, err)
	}
}

// adminEventsNow is every admin event of the org, as stored now (admin
// events are written before the change answers; request events, written
// asynchronously, are left out).
func adminEventsNow(t *testing.T, st edge.AuditStore, orgID string) []edge.AuditEvent {
	t.Helper()
	evs, err := st.AuditEvents(context.Background(), orgID, edge.AuditQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var admin []edge.AuditEvent
	for _, e := range evs {
		if e.Kind == edge.AuditAdmin {
			admin = append(admin, e)
		}
	}
	return admin
}

// TestAuditRecordsMemory: setting a memory is an admin event (name,
// version and size, never the text); a request that carried it records
// name@version, and at level full its content is the body the client sent,
// without the injected text.
func TestAuditRecordsMemory(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	admin := "http://" + h.srv.AdminAddr() + "/admin/v1"
	jsonType := map[string]string{"Content-Type": "application/json"}
	memText := newCanary("mem")
	if st, body := adminReq(t, "PUT", admin+"/orgs/acme/audit/level", "", jsonType, `{"level":"full"}`); st != 200 {
		t.Fatalf("level: %d %s", st, body)
	}
	if st, body := adminReq(t, "PUT", admin+"/orgs/acme/memories/style", "", jsonType, `{"text":"`+memText+`"}`); st != 200 {
		t.Fatalf("memory: %d %s", st, body)
	}
	oc := h.openai(tn.key)
	if _, err := oc.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}); err != nil {
		t.Fatal(err)
	}
	evs := auditEvents(t, h.store, tn.orgID, 3)
	set, _ := audit.ItemOf(evs[1])
	if set.Action != "memory.set" || set.Target != "style" || set.Details["version"] != "1" || strings.Contains(string(evs[1].Meta), memText) {
		t.Errorf("memory.set event %s", evs[1].Meta)
	}
	req, _ := audit.ItemOf(evs[2])
	if req.Memory != "style@1" {
		t.Errorf("request event's memory %q, want style@1", req.Memory)
	}
	c, err := audit.OpenContent(context.Background(), h.srv.Keyring(), evs[2])
	if err != nil || strings.Contains(string(c.Request), memText) || !strings.Contains(string(c.Request), "hello") {
		t.Errorf("content %q, %v: want the client's body without the memory", c.Request, err)
	}
}

// lastChange is the sequence number of the store's latest change-feed
// entry.
func lastChange(t *testing.T, st interface {
	Changes(ctx context.Context, after int64) ([]edge.Change, error)
}) int64 {
	t.Helper()
	var last int64
	for {
		cs, err := st.Changes(context.Background(), last)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return last
		}
		last = cs[len(cs)-1].Seq
	}
}
