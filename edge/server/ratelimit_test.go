package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
)

// chatOnce sends one chat completion through oc and returns the response
// the SDK saw, refused or not.
func chatOnce(ctx context.Context, oc openai.Client, content string, opts ...option.RequestOption) (*http.Response, error) {
	var resp *http.Response
	_, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)},
	}, append(opts, option.WithResponseInto(&resp))...)
	var oe *openai.Error
	if errors.As(err, &oe) {
		resp = oe.Response
	}
	return resp, err
}

func messageOnce(ctx context.Context, ac anthropic.Client, content string) (*http.Response, error) {
	var resp *http.Response
	_, err := ac.Messages.New(ctx, anthropic.MessageNewParams{
		Model: "claude-haiku-4-5", MaxTokens: 64,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(content))},
	}, aoption.WithResponseInto(&resp))
	var ae *anthropic.Error
	if errors.As(err, &ae) {
		resp = ae.Response
	}
	return resp, err
}

func (h *harness) setLimit(l edge.Limit) {
	h.t.Helper()
	if err := h.store.SetLimit(context.Background(), l); err != nil {
		h.t.Fatal(err)
	}
}

// wantLimited checks a 429 of a limit in OpenAI's shape.
func wantLimited(t *testing.T, resp *http.Response, err error, typ string) {
	t.Helper()
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 429 || oe.Code != "rate_limit_exceeded" || oe.Type != typ {
		t.Fatalf("want 429 rate_limit_exceeded/%s, got %v", typ, err)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 {
		t.Errorf("Retry-After %q, want whole seconds, at least 1", resp.Header.Get("Retry-After"))
	}
}

func metricsText(t *testing.T, h *harness) string {
	t.Helper()
	resp, err := http.Get("http://" + h.srv.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestRateLimitRPM: a key's rpm refuses past its limit in both providers'
// shapes, with the x-ratelimit-* headers on every answer; another key of
// the org is not affected; removing the limit lets the key through, on a
// running edge, within CODEX_CHANGE_POLL.
func TestRateLimitRPM(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.CacheEnabled = false })
	tn := h.addOrg("acme")
	otherID, otherKey := h.addKey(tn.orgID)
	_ = otherID
	ctx := ctxT(t)
	oc, ac := h.openai(tn.key), h.anthropic(tn.key)

	// Without a limit, no headers.
	resp, err := chatOnce(ctx, oc, "hello")
	if err != nil || resp.Header.Get("X-Ratelimit-Limit-Requests") != "" {
		t.Fatalf("unlimited key: %v, headers %v", err, resp.Header)
	}

	h.setLimit(edge.Limit{OrgID: tn.orgID, KeyID: tn.keyID, RPM: 3})
	// The running edge picks the change up within the poll.
	testutil.Eventually(t, 10*time.Second, "the limit to apply", func() bool {
		resp, err := chatOnce(ctx, oc, "hello")
		return err == nil && resp.Header.Get("X-Ratelimit-Limit-Requests") == "3"
	})
	// One of three was used; one more passes.
	resp, err = chatOnce(ctx, oc, "hello")
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	if got := resp.Header.Get("X-Ratelimit-Remaining-Requests"); got != "1" {
		t.Errorf("remaining after 2 of 3: %q", got)
	}
	if d, err := time.ParseDuration(resp.Header.Get("X-Ratelimit-Reset-Requests")); err != nil || d <= 0 || d > time.Minute {
		t.Errorf("reset %q: %v", resp.Header.Get("X-Ratelimit-Reset-Requests"), err)
	}
	if _, err := messageOnce(ctx, ac, "hello"); err != nil {
		t.Fatalf("third request (Anthropic): %v", err)
	}
	resp, err = chatOnce(ctx, oc, "hello")
	wantLimited(t, resp, err, "requests")
	if resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Errorf("refusal headers: %v", resp.Header)
	}
	resp, err = messageOnce(ctx, ac, "hello")
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 || !strings.Contains(ae.RawJSON(), `"rate_limit_error"`) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("Anthropic refusal: %v", err)
	}

	// The org's other key is not limited.
	if _, err := chatOnce(ctx, h.openai(otherKey), "hello"); err != nil {
		t.Fatalf("other key: %v", err)
	}
	if m := metricsText(t, h); !strings.Contains(m, `codex_edge_limit_refusals_total{reason="rpm"} 2`) {
		t.Errorf("metrics lack two rpm refusals")
	}

	// Removing the limit lets the key through again.
	h.setLimit(edge.Limit{OrgID: tn.orgID, KeyID: tn.keyID})
	testutil.Eventually(t, 10*time.Second, "the removal to apply", func() bool {
		_, err := chatOnce(ctx, oc, "hello")
		return err == nil
	})
}

// TestRateLimitTPMAndCacheHits: tpm admits while a token is left and is
// charged with the answer's real count; a cache hit counts against rpm
// and never against tpm; an org limit covers all its keys.
func TestRateLimitTPMAndCacheHits(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil) // cache on
	tn := h.addOrg("acme")
	_, otherKey := h.addKey(tn.orgID)
	ctx := ctxT(t)
	oc := h.openai(tn.key)

	// "one two three": 3 words + 8 = 11 input tokens, and some output.
	h.setLimit(edge.Limit{OrgID: tn.orgID, TPM: 25, RPM: 100})
	resp, err := chatOnce(ctx, oc, "one two three")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Ratelimit-Limit-Tokens") != "25" || resp.Header.Get("X-Ratelimit-Remaining-Tokens") != "25" {
		t.Fatalf("tpm headers of the first request: %v", resp.Header)
	}
	u, _ := h.fake.LastUsage()
	used := u.TotalTokens()
	if used < 12 || used > 24 {
		t.Fatalf("test assumes one answer uses 12..24 tokens, not %d", used)
	}
	// The same request again is a cache hit: rpm counts it, tpm does not.
	resp, err = chatOnce(ctx, oc, "one two three")
	if err != nil || resp.Header.Get("X-Codex-Cache") != "hit" {
		t.Fatalf("repeat: %v, cache %q", err, resp.Header.Get("X-Codex-Cache"))
	}
	rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if rem > int(25-used) || rem < int(25-used)-1 {
		t.Errorf("tokens remaining after one answer of %d: %d", used, rem)
	}
	if r, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Requests")); r != 98 {
		t.Errorf("requests remaining after a miss and a hit: %d, want 98", r)
	}
	hit := resp.Header.Get("X-Ratelimit-Remaining-Tokens")
	resp, _ = chatOnce(ctx, oc, "one two three")
	if got := resp.Header.Get("X-Ratelimit-Remaining-Tokens"); got != hit && got != strconv.Itoa(rem+1) {
		t.Errorf("a cache hit was charged tokens: remaining %s, then %s", hit, got)
	}
	// A second fresh answer takes the org past its tpm (the charge goes
	// into debt); then the org's keys are refused with type tokens.
	if _, err := chatOnce(ctx, oc, "four five six seven"); err != nil {
		t.Fatalf("second fresh request: %v", err)
	}
	resp, err = chatOnce(ctx, h.openai(otherKey), "eight nine")
	wantLimited(t, resp, err, "tokens")
	if m := metricsText(t, h); !strings.Contains(m, `codex_edge_limit_refusals_total{reason="tpm"} 1`) {
		t.Errorf("metrics lack the tpm refusal")
	}
}

// TestRateLimitSharedInRedis: two edges on one store and one Redis see
// one limit; with Redis unreachable an edge still serves, on its own
// counters, and counts the fallback.
func TestRateLimitSharedInRedis(t *testing.T) {
	url := testutil.RedisURL(t)
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.RedisURL = url; c.CacheEnabled = false })
	tn := h.addOrg("acme")
	h2 := h.twin(nil)
	ctx := ctxT(t)
	h.setLimit(edge.Limit{OrgID: tn.orgID, KeyID: tn.keyID, RPM: 2})
	for _, hh := range []*harness{h, h2} {
		if _, err := chatOnce(ctx, hh.openai(tn.key), "hi"); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := chatOnce(ctx, h.openai(tn.key), "hi")
	wantLimited(t, resp, err, "requests")
	resp, err = chatOnce(ctx, h2.openai(tn.key), "hi")
	wantLimited(t, resp, err, "requests")

	// Redis down: a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "redis://" + ln.Addr().String() + "/0"
	ln.Close()
	h3 := h.twin(func(c *config.Config) { c.RedisURL = dead })
	for i := range 2 {
		if resp, err := chatOnce(ctx, h3.openai(tn.key), "hi"); err != nil || resp.Header.Get("X-Ratelimit-Limit-Requests") != "2" {
			t.Fatalf("request %d with Redis down: %v", i, err)
		}
	}
	resp, err = chatOnce(ctx, h3.openai(tn.key), "hi")
	wantLimited(t, resp, err, "requests")
	if m := metricsText(t, h3); !strings.Contains(m, `codex_edge_limit_fallbacks_total{what="ratelimit"}`) {
		t.Errorf("the fallback is not counted")
	}
}
