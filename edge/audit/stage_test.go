package audit

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/pipeline"
	"github.com/persiv/codex/edge/provider/openai"
	"github.com/persiv/codex/edge/sse"
)

// stageEnv is the audit stage in front of a handler standing in for the
// later stages, on a real store, keyring and key directory.
type stageEnv struct {
	*fixture
	w     *Writer
	dir   *directory.Directory
	key   directory.Key
	e     *echo.Echo
	stage pipeline.Stage
}

func newStageEnv(t testing.TB, level edge.AuditLevel, wo WriterOptions) *stageEnv {
	t.Helper()
	f := newFixture(t)
	ctx := context.Background()
	secret, _ := apikey.Generate()
	k := edge.APIKey{ID: apikey.NewID("key_"), OrgID: f.org, Name: "k", Prefix: apikey.DisplayPrefix(secret), Hash: apikey.Hash(secret)}
	if err := f.st.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetAuditLevel(ctx, edge.AuditSetting{OrgID: f.org, Level: level}); err != nil {
		t.Fatal(err)
	}
	dir := directory.New(f.st, directory.Options{Keys: f.keys})
	key, err := dir.Resolve(ctx, k.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if wo.Logger == nil {
		wo.Logger = slog.New(slog.DiscardHandler)
	}
	w := NewWriter(f.st, wo)
	t.Cleanup(func() { w.Close(context.Background()) })
	return &stageEnv{fixture: f, w: w, dir: dir, key: key, e: echo.New(),
		stage: Stage(Options{Writer: w, Keys: f.keys})}
}

// serve runs one request with body through the stage in front of h, and
// returns what the client received.
func (env *stageEnv) serve(body string, h pipeline.HandlerFunc) (*httptest.ResponseRecorder, *pipeline.Exchange) {
	r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(body))
	rec := httptest.NewRecorder()
	x := pipeline.New(echo.NewResponse(rec, env.e), r, openai.Format{}, "chat.completions",
		apikey.NewTimeID("req_", time.Now()), time.Now(), slog.New(slog.DiscardHandler))
	x.Key, x.Rec.OrgID, x.Rec.KeyID = env.key, env.key.OrgID, env.key.ID
	if err := env.stage(h).Serve(x); err != nil {
		_ = pipeline.WriteError(x.W, x.Format, edge.ErrorFor(err), x.Rec.ID)
	}
	return rec, x
}

// events waits until the org has n events and returns them.
func (env *stageEnv) events(t testing.TB, n int) []edge.AuditEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := env.st.AuditEvents(context.Background(), env.org, edge.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) >= n {
			if len(evs) > n {
				t.Fatalf("%d events, want %d", len(evs), n)
			}
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events after 10s, want %d", len(evs), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const jsonAnswer = `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"an answer"}}]}`

// answerJSON reads the body, as intake does, and answers JSON.
func answerJSON(x *pipeline.Exchange) error {
	if _, err := io.ReadAll(x.R.Body); err != nil {
		return err
	}
	x.Rec.Model = "gpt-4o-mini"
	x.W.Header().Set("Content-Type", "application/json")
	x.W.Header().Set("Content-Length", "113")
	x.W.WriteHeader(200)
	_, err := x.W.Write([]byte(jsonAnswer))
	return err
}

var streamEvents = []string{
	"data: {\"choices\":[{\"delta\":{\"content\":\"an \"}}]}\n\n",
	"data: {\"choices\":[{\"delta\":{\"content\":\"answer\"}}]}\n\n",
	"data: [DONE]\n\n",
}

// answerStream reads the body and answers a stream event by event; seen
// records what the client had received before each event was written.
func answerStream(seen *[]string, rec *httptest.ResponseRecorder) pipeline.HandlerFunc {
	return func(x *pipeline.Exchange) error {
		if _, err := io.ReadAll(x.R.Body); err != nil {
			return err
		}
		x.W.Header().Set("Content-Type", "text/event-stream")
		x.W.WriteHeader(200)
		x.W.Flush()
		for _, ev := range streamEvents {
			if seen != nil {
				*seen = append(*seen, rec.Body.String())
			}
			if _, err := x.W.Write([]byte(ev)); err != nil {
				return err
			}
			x.W.Flush()
		}
		return nil
	}
}

func TestStageNone(t *testing.T) {
	env := newStageEnv(t, edge.AuditNone, WriterOptions{Flush: 5 * time.Millisecond})
	rec, x := env.serve(`{"model":"gpt-4o-mini"}`, answerJSON)
	if rec.Code != 200 || rec.Body.String() != jsonAnswer {
		t.Fatalf("answer %d %q", rec.Code, rec.Body)
	}
	ev := env.events(t, 1)[0]
	if ev.ID != x.Rec.ID || ev.RequestDigest != nil || ev.ResponseDigest != nil || ev.Content != nil {
		t.Fatalf("event %+v", ev)
	}
	m, err := ParseMeta(ev.Meta)
	if err != nil || m.Level != edge.AuditNone || m.Status != 200 || m.Model != "gpt-4o-mini" || m.KeyID != env.key.ID || m.Kind != edge.AuditRequest {
		t.Fatalf("meta %+v, %v", m, err)
	}
}

// TestStageNoneAllocates: at level none the stage adds no allocation to a
// request (the queue's slice has grown already).
func TestStageNoneAllocates(t *testing.T) {
	env := newStageEnv(t, edge.AuditNone, WriterOptions{Flush: time.Hour, Batch: 1 << 20})
	r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	rec := httptest.NewRecorder()
	x := pipeline.New(echo.NewResponse(rec, env.e), r, openai.Format{}, "chat.completions", "req_1", time.Now(), slog.New(slog.DiscardHandler))
	x.Key, x.Rec.OrgID = env.key, env.key.OrgID
	noop := pipeline.HandlerFunc(func(x *pipeline.Exchange) error { x.Rec.Status = 200; return nil })
	h := env.stage(noop)
	for range 100 { // grow the queue
		_ = h.Serve(x)
	}
	if n := testing.AllocsPerRun(1000, func() { _ = h.Serve(x) }); n != 0 {
		t.Fatalf("%v allocations per request at level none, want 0", n)
	}
}

func TestStageHash(t *testing.T) {
	env := newStageEnv(t, edge.AuditHash, WriterOptions{Flush: 5 * time.Millisecond})
	const body = `{"model":"gpt-4o-mini","stream":true}`
	rec, _ := env.serve(`{"model":"gpt-4o-mini"}`, answerJSON)
	srec, _ := env.serve(body, answerStream(nil, nil))
	if rec.Body.String() != jsonAnswer || srec.Body.String() != strings.Join(streamEvents, "") {
		t.Fatalf("answers %q, %q", rec.Body, srec.Body)
	}
	evs := env.events(t, 2)
	for i, want := range [][2]string{{`{"model":"gpt-4o-mini"}`, jsonAnswer}, {body, strings.Join(streamEvents, "")}} {
		d1, d2 := Digests(env.fp, []byte(want[0]), []byte(want[1]))
		if !bytes.Equal(evs[i].RequestDigest, d1) || !bytes.Equal(evs[i].ResponseDigest, d2) || evs[i].Content != nil {
			t.Errorf("event %d: digests %x %x, want %x %x", i, evs[i].RequestDigest, evs[i].ResponseDigest, d1, d2)
		}
	}
}

func TestStageFull(t *testing.T) {
	env := newStageEnv(t, edge.AuditFull, WriterOptions{})
	ctx := context.Background()

	rec, x := env.serve(`{"model":"gpt-4o-mini","messages":"CANARY-json"}`, answerJSON)
	if rec.Code != 200 || rec.Body.String() != jsonAnswer || rec.Header().Get("Content-Length") != "113" {
		t.Fatalf("answer %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	// The event is stored before the answer is: no waiting.
	ev, err := env.st.AuditEventByID(ctx, x.Rec.ID)
	if err != nil {
		t.Fatalf("event not stored when the answer completed: %v", err)
	}
	c, err := OpenContent(ctx, env.keys, ev)
	if err != nil || string(c.Request) != `{"model":"gpt-4o-mini","messages":"CANARY-json"}` || string(c.Response) != jsonAnswer {
		t.Fatalf("content %q %q %v", c.Request, c.Response, err)
	}

	// A stream passes on event by event; its final event only once the
	// event is stored.
	var seen []string
	srec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	sx := pipeline.New(echo.NewResponse(srec, env.e), r, openai.Format{}, "chat.completions", apikey.NewTimeID("req_", time.Now()), time.Now(), slog.New(slog.DiscardHandler))
	sx.Key, sx.Rec.OrgID = env.key, env.key.OrgID
	if err := env.stage(answerStream(&seen, srec)).Serve(sx); err != nil {
		t.Fatal(err)
	}
	if want := streamEvents[0]; seen[2] != want+streamEvents[1] {
		t.Errorf("before the final event the client had %q, want the first two events", seen[2])
	}
	if srec.Body.String() != strings.Join(streamEvents, "") {
		t.Fatalf("stream %q", srec.Body)
	}
	ev, err = env.st.AuditEventByID(ctx, sx.Rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := OpenContent(ctx, env.keys, ev); err != nil || string(c.Response) != strings.Join(streamEvents, "") {
		t.Fatalf("stream content %q, %v", c.Response, err)
	}
	if r, err := Verify(ctx, env.st, env.org, env.keys, StoredSecrets(env.st, env.keys)); err != nil || r.Break != nil || r.ContentChecked != 2 {
		t.Fatalf("Verify = %+v, %v", r, err)
	}
}

// TestStageFullStoreDown: at level full with the store down, nothing is
// answered without a record: a JSON answer is replaced by 503
// audit_unavailable, a stream's final event by an error event; then,
// while the store is known down, requests are refused before the later
// stages run.
func TestStageFullStoreDown(t *testing.T) {
	env := newStageEnv(t, edge.AuditFull, WriterOptions{CommitTimeout: 2 * time.Second})
	env.st.Close()

	rec, x := env.serve(`{"model":"gpt-4o-mini"}`, answerJSON)
	if rec.Code != 503 || strings.Contains(rec.Body.String(), "an answer") || !strings.Contains(rec.Body.String(), "audit_unavailable") {
		t.Fatalf("JSON answer with the store down: %d %q", rec.Code, rec.Body)
	}
	if x.Rec.Status != 503 || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("status recorded %d, retry-after %q", x.Rec.Status, rec.Header().Get("Retry-After"))
	}
	called := false
	rec, _ = env.serve(`{}`, func(x *pipeline.Exchange) error { called = true; return answerJSON(x) })
	if called || rec.Code != 503 {
		t.Fatalf("while the store is known down: handler called %v, answer %d", called, rec.Code)
	}

	// The final event is known by parsing it (a replay from the cache)
	// or told by the writer (the forwarder).
	for i, h := range []pipeline.HandlerFunc{answerStream(nil, nil), answerStreamTelling} {
		time.Sleep(FailFast) // the next request tries the store again
		srec := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(`{"stream":true}`))
		sx := pipeline.New(echo.NewResponse(srec, env.e), r, openai.Format{}, "chat.completions", "req_s"+strconv.Itoa(i), time.Now(), slog.New(slog.DiscardHandler))
		sx.Key, sx.Rec.OrgID = env.key, env.key.OrgID
		if err := env.stage(h).Serve(sx); err != nil {
			t.Fatal(err)
		}
		got := srec.Body.String()
		if strings.Contains(got, "[DONE]") || !strings.Contains(got, "audit_unavailable") || !strings.HasPrefix(got, streamEvents[0]+streamEvents[1]) {
			t.Fatalf("stream %d with the store down: %q", i, got)
		}
		rd := sse.NewReader(strings.NewReader(got))
		var last sse.Event
		for {
			ev, err := rd.Next()
			if err != nil {
				break
			}
			last = ev
		}
		if !strings.Contains(string(last.Data), "audit_unavailable") {
			t.Errorf("stream %d: last event %q, want the audit_unavailable error", i, last.Data)
		}
	}
}

// answerStreamTelling answers a stream as the forwarder does: telling,
// before each event, whether it is the final one.
func answerStreamTelling(x *pipeline.Exchange) error {
	if _, err := io.ReadAll(x.R.Body); err != nil {
		return err
	}
	x.W.Header().Set("Content-Type", "text/event-stream")
	x.W.WriteHeader(200)
	x.W.Flush()
	for i, ev := range streamEvents {
		x.EventFinal, x.EventFinalKnown = i == len(streamEvents)-1, true
		_, err := x.W.Write([]byte(ev))
		x.EventFinalKnown = false
		if err != nil {
			return err
		}
		x.W.Flush()
	}
	return nil
}

func TestStageFullTooLarge(t *testing.T) {
	env := newStageEnv(t, edge.AuditFull, WriterOptions{})
	env.stage = Stage(Options{Writer: env.w, Keys: env.keys, MaxContentBytes: 64})
	rec, _ := env.serve(`{"model":"gpt-4o-mini"}`, answerJSON)
	if rec.Code != 503 || strings.Contains(rec.Body.String(), "an answer") {
		t.Fatalf("answer over CODEX_AUDIT_MAX_BYTES: %d %q", rec.Code, rec.Body)
	}
	if evs, _ := env.st.AuditEvents(context.Background(), env.org, edge.AuditQuery{Limit: 10}); len(evs) != 0 {
		t.Fatalf("%d events stored", len(evs))
	}
}

// TestStageErrors: an error of a later stage is answered by the audit
// stage, recorded with its status and, at full, with its body.
func TestStageErrors(t *testing.T) {
	env := newStageEnv(t, edge.AuditFull, WriterOptions{})
	bad := &edge.Error{Status: 400, Code: "invalid_json", Message: "Malformed JSON body"}
	rec, x := env.serve(`{not json`, func(x *pipeline.Exchange) error { _, _ = io.ReadAll(x.R.Body); return bad })
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "invalid_json") {
		t.Fatalf("answer %d %q", rec.Code, rec.Body)
	}
	ev, err := env.st.AuditEventByID(context.Background(), x.Rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ParseMeta(ev.Meta)
	c, err := OpenContent(context.Background(), env.keys, ev)
	if m.Status != 400 || err != nil || string(c.Request) != `{not json` || !strings.Contains(string(c.Response), "invalid_json") {
		t.Fatalf("event %+v: %q %q %v", m, c.Request, c.Response, err)
	}
}

// TestStageNoOrg: a request no org was found for (auth answered it) is
// not recorded.
func TestStageNoOrg(t *testing.T) {
	env := newStageEnv(t, edge.AuditFull, WriterOptions{})
	r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	x := pipeline.New(echo.NewResponse(httptest.NewRecorder(), env.e), r, openai.Format{}, "chat.completions", "req_x", time.Now(), slog.New(slog.DiscardHandler))
	called := false
	if err := env.stage(pipeline.HandlerFunc(func(*pipeline.Exchange) error { called = true; return nil })).Serve(x); err != nil {
		t.Fatal(err)
	}
	if !called {
		t.Fatal("next not called")
	}
	if _, ok := x.W.Writer.(*capture); ok {
		t.Fatal("capture left in place")
	}
	_ = http.StatusOK
}
