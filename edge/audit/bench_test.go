package audit

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/pipeline"
	"github.com/persiv/codex/edge/provider/openai"
)

// discard is a client that reads nothing back.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}

// BenchmarkStage is the audit stage's cost on the request path, at each
// level, in front of a handler that reads a 1 KiB request and answers
// 1 KiB of JSON ("off" is that handler alone): none and hash queue the
// event (the writer stores it later, see BenchmarkWriter); full seals it
// and stores it in the embedded store (an fsync'd SQLite commit) before
// answering, one request at a time (serial) or many at once sharing group
// commits (parallel).
func BenchmarkStage(b *testing.B) {
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("x", 1000) + `"}]}`)
	answer := []byte(`{"choices":[{"message":{"content":"` + strings.Repeat("y", 1000) + `"}}]}`)
	next := pipeline.HandlerFunc(func(x *pipeline.Exchange) error {
		if _, err := io.Copy(io.Discard, x.R.Body); err != nil {
			return err
		}
		x.W.Header().Set("Content-Type", "application/json")
		x.W.WriteHeader(200)
		_, err := x.W.Write(answer)
		return err
	})
	for _, level := range []edge.AuditLevel{"off", edge.AuditNone, edge.AuditHash, edge.AuditFull} {
		set := level
		if level == "off" {
			set = edge.AuditNone
		}
		// The queue holds every event of the run: none is written while
		// it is timed.
		env := newStageEnv(b, set, WriterOptions{Flush: time.Hour, Queue: 1 << 22, Batch: 1 << 22})
		h := env.stage(next)
		if level == "off" {
			h = next
		}
		run := func(b *testing.B) {
			e := echo.New()
			w := &discard{h: http.Header{}}
			for b.Loop() {
				x := pipeline.New(echo.NewResponse(w, e), httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(body)),
					openai.Format{}, "chat.completions", "req_bench", time.Now(), slog.New(slog.DiscardHandler))
				x.Key, x.Rec.OrgID = env.key, env.key.OrgID
				x.Rec.ID = newBenchID()
				if err := h.Serve(x); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(string(level), func(b *testing.B) {
			b.ReportAllocs()
			run(b)
		})
		if level == edge.AuditFull {
			b.Run(string(level)+"-parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					e := echo.New()
					w := &discard{h: http.Header{}}
					for pb.Next() {
						x := pipeline.New(echo.NewResponse(w, e), httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(body)),
							openai.Format{}, "chat.completions", "", time.Now(), slog.New(slog.DiscardHandler))
						x.Key, x.Rec.OrgID = env.key, env.key.OrgID
						x.Rec.ID = newBenchID()
						if err := h.Serve(x); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.ReportMetric(float64(env.w.Committed())/float64(env.w.CommitBatches()), "events/commit")
			})
		}
	}
}

func newBenchID() string { return apikey.NewTimeID("req_", time.Now()) }

// BenchmarkWriter is what storing a queued event costs the writer, in
// batches of 1000 events of one org at level hash, in the embedded store.
func BenchmarkWriter(b *testing.B) {
	f := newFixture(b)
	batch := make([]edge.AuditEvent, 1000)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i] = f.request(b, edge.AuditHash, "p", "a")
		}
		if err := f.st.AppendAudit(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
}
