// Command codex-fakeprovider serves the fake OpenAI and Anthropic APIs of
// package fakeprovider on a loopback address, for `make demo` and
// `make bench`. It prints the URL it listens on, then serves until SIGINT
// or SIGTERM.
//
// Keys come from the environment, never from flags: CODEX_FAKE_OPENAI_KEY
// and CODEX_FAKE_ANTHROPIC_KEY (unset: any non-empty key is accepted).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/persiv/codex/edge/fakeprovider"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "codex-fakeprovider:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. It writes the URL it listens on to stdout, as
// one line, once the listener is open.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("codex-fakeprovider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9090", "address to listen on (port 0 picks a free port)")
	latency := fs.Duration("latency", 0, "delay before the response headers of every request (model fake-slow: this, or 1s when 0)")
	chunkDelay := fs.Duration("chunk-delay", 0, "delay between stream chunks")
	chunks := fs.Int("chunks", 4, "text deltas per streamed answer")
	longLine := fs.Int("long-line-bytes", fakeprovider.LongLineBytes, "length of the one-word answer of model "+fakeprovider.ModelLongLine+" (streamed as a single SSE line)")
	stamp := fs.Bool("stamp", false, `start every stream event with a comment ": t=<unix ns>" of its send time`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *longLine < 1 {
		return fmt.Errorf("-long-line-bytes must be at least 1, got %d", *longLine)
	}
	if *chunks < 1 {
		return fmt.Errorf("-chunks must be at least 1, got %d", *chunks)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))

	srv := fakeprovider.New(fakeprovider.Options{
		Latency:       *latency,
		ChunkDelay:    *chunkDelay,
		Chunks:        *chunks,
		Stamp:         *stamp,
		LongLineBytes: *longLine,
		OpenAIKey:     getenv("CODEX_FAKE_OPENAI_KEY"),
		AnthropicKey:  getenv("CODEX_FAKE_ANTHROPIC_KEY"),
		NoRecord:      true, // nobody reads records across processes
	})
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{
		Handler: srv,
		// Requests live in ctx, so a signal ends hung and stalled ones
		// (fake-hang, fake-stall wait for their context) and the shutdown
		// below completes at once.
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	url := "http://" + ln.Addr().String()
	if _, err := fmt.Fprintln(stdout, url); err != nil {
		_ = ln.Close()
		return fmt.Errorf("print url: %w", err)
	}
	log.Info("listening", "url", url)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// Past the deadline: cut the connections still open.
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}
