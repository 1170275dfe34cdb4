package server

import (
	"context"
	"log/slog"
	"testing"

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
