package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/store/sqlite"
)

// Issue 13, finding 11: the admin listener bounds slow headers and closes
// idle keep-alive connections.
func TestAdminListenerTimeouts(t *testing.T) {
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	s, err := New(context.Background(), cfg, st, slog.New(slog.DiscardHandler), Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if s.admin.ReadHeaderTimeout != AdminReadHeaderTimeout || s.admin.IdleTimeout != AdminIdleTimeout || s.admin.MaxHeaderBytes != AdminMaxHeaderBytes {
		t.Fatalf("admin listener: ReadHeaderTimeout %v, IdleTimeout %v, MaxHeaderBytes %d; want %v, %v, %d",
			s.admin.ReadHeaderTimeout, s.admin.IdleTimeout, s.admin.MaxHeaderBytes, AdminReadHeaderTimeout, AdminIdleTimeout, AdminMaxHeaderBytes)
	}
	if AdminIdleTimeout <= 0 || AdminReadHeaderTimeout <= 0 {
		t.Fatal("an admin timeout of zero means none")
	}
}

// Issue 14, item 4: an admin request that fails on the edge's side answers
// 500 with a reference and no detail; the log has the cause under the same
// reference.
func TestAdminErrorHidesCause(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	rec := httptest.NewRecorder()
	c := echo.New().NewContext(httptest.NewRequest("GET", "/admin/v1/telemetry/ledger", nil), rec)
	s.adminError(fmt.Errorf("read ledger: %w", errors.New("open /var/lib/codex/ledger: permission denied")), c)
	var got edge.AdminBody
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 500 || got.Error.Code != "internal" {
		t.Fatalf("%d %s (%v)", rec.Code, rec.Body, err)
	}
	msg, ref, ok := strings.Cut(got.Error.Message, "(reference ")
	ref = strings.TrimSuffix(ref, ")")
	if !ok || strings.Contains(msg, "ledger") || len(ref) != 12 {
		t.Fatalf("message %q: want no detail and a reference", got.Error.Message)
	}
	if !strings.Contains(logs.String(), "error_id="+ref) || !strings.Contains(logs.String(), "permission denied") {
		t.Fatalf("log lacks the reference or the cause: %s", logs.String())
	}
}
