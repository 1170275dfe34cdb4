//go:build localkms

package cloudmode_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
	"github.com/persiv/codex/edge/keyring/awskms/kmstest"
	"github.com/persiv/codex/edge/keyring/kek"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/sqlite"
	"github.com/persiv/codex/edge/store/storetest"
)

// TestCloudMode runs two edges on one store whose orgs a and b have their
// own KMS keys (two local KMS keys, as keys in two customers' accounts),
// org c the edge's own master key (CODEX_KEK, the operator's: the local
// key file). Every org has a sealed provider credential, a memory and its
// audit log at level full. It proves:
//
//   - each org is served from its cache, with its memory, under its key;
//   - the operator's key opens none of a's or b's sealed rows (c's, yes);
//   - no credential, memory text or prompt is in the store in plaintext
//     (the SQLite file and WAL, or a dump of the Postgres tables);
//   - disabling a's key makes a unreadable on both edges within 10 s (503
//     provider_credential_unavailable, memory and audit content refused)
//     while b and c keep working, and enabling it restores a;
//   - a backup taken before the shred (a copy of the SQLite file and WAL,
//     or a pg_dump restored into a fresh database), opened afterwards with
//     the edge's default master key and its KMS access, refuses every
//     sealed row of a (shredded, its key scheduled for deletion), opens
//     b's (not shredded: the copy is a usable backup) and opens c's
//     although c was shredded too: under the shared key a backup still
//     opens.
func TestCloudMode(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { cloudMode(t, false) })
	// Two edges sharing Postgres, as a cloud deployment runs: the dev
	// server is reached through its Unix socket (scripts/local-kms.sh
	// passes its URLs), which the private network namespace does not cut
	// off.
	t.Run("postgres", func(t *testing.T) { cloudMode(t, true) })
}

// tenant is an org with a sealed provider credential, a memory, audit at
// level full and one gateway key, on its own KMS key (arn) or on the edge's
// default master key (arn empty). Its credential, memory text and prompt
// are canaries: no store file may hold them in plaintext.
type tenant struct {
	name, id, arn, key         string
	credential, memory, prompt string
}

func (tn *tenant) canaries() []string { return []string{tn.credential, tn.memory, tn.prompt} }

// cloud is one run's store and two edges.
type cloud struct {
	t       *testing.T
	ctx     context.Context
	kms     *kms.Client
	cfg     config.Config
	st      server.Store // the first edge's; the CLI's handle too
	lite    *sqlite.DB   // the embedded store; nil on Postgres
	owner   string       // the Postgres test database's owner URL
	edges   []*server.Server
	fp      *fakeprovider.Server
	fakeURL string
	// control is every gateway key's name: stored in plaintext by design,
	// so a scan that misses it could not have found a leaked canary.
	control string
}

func canary(what string) string { return what + "-canary-" + rand.Text()[:12] }

// cloudMode is TestCloudMode on SQLite (both edges on one embedded store)
// or on Postgres (each edge with its own connection pool to one database).
func cloudMode(t *testing.T, pg bool) {
	began := time.Now()
	c := newCloud(t, pg)
	a, b, sh := c.addTenant("a", true), c.addTenant("b", true), c.addTenant("c", false)
	tenants := []*tenant{a, b, sh}

	for _, e := range c.edges {
		for _, tn := range tenants {
			testutil.Eventually(t, 10*time.Second, "org "+tn.name+" served from its cache, with its memory, under its key", func() bool { return c.served(e, tn) })
		}
	}
	for _, tn := range tenants {
		if !slices.ContainsFunc(c.fp.Requests(), func(r fakeprovider.Request) bool { return r.Header.Get("Authorization") == "Bearer "+tn.credential }) {
			t.Fatalf("the provider never got org %s's sealed credential", tn.name)
		}
		testutil.Eventually(t, 10*time.Second, "org "+tn.name+"'s audit content stored", func() bool { return len(fullEvents(t, c.st, tn)) > 0 })
	}

	c.operatorOpensNone(tenants)
	c.disableWhileServing(a, b, sh)

	// The backup, taken before the shred; the scan of what it holds.
	var restore func() server.Store
	if pg {
		dumps := t.TempDir()
		file := pgBackup(t, c.owner, dumps)
		c.scanClean(dumps, tenants)
		restore = func() server.Store { return pgRestore(t, file) }
	} else {
		c.scanClean(c.cfg.DataDir, tenants)
		copyDir := t.TempDir()
		if err := c.lite.Compact(c.ctx); err != nil { // a consistent file to copy
			t.Fatal(err)
		}
		backup(t, c.cfg.DataDir, copyDir)
		restore = func() server.Store {
			old, err := sqlite.Open(c.ctx, copyDir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { old.Close() })
			return old
		}
	}

	// crypto shred --org a --schedule-key-deletion 7; crypto shred --org c.
	kr, orgs, err := server.OpenKeyringOrgs(c.ctx, c.cfg, c.st, noEnv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range []*tenant{a, sh} {
		if _, err := server.Shred(c.ctx, c.cfg, c.st, kr, tn.id); err != nil {
			t.Fatal(err)
		}
		if deks, err := c.st.DEKs(c.ctx, tn.id); err != nil || len(deks) != 0 {
			t.Fatalf("after the shred the store holds %d data keys of %s (%v)", len(deks), tn.name, err)
		}
	}
	own, ok := orgs.Master(a.id).(*awskms.MasterKey)
	if !ok {
		t.Fatalf("org a's master key is %T, want its KMS key", orgs.Master(a.id))
	}
	if _, err := own.ScheduleDeletion(c.ctx, 7); err != nil {
		t.Fatal(err)
	}

	// The operator restores the backup and opens it as an edge would: the
	// default master key (the key file in the data directory) and the
	// edge's KMS access.
	old := restore()
	restored, oldOrgs, err := server.OpenKeyringOrgs(c.ctx, c.cfg, old, noEnv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	expectSealed(t, "the pre-shred backup", old, restored, a, false)
	expectSealed(t, "the pre-shred backup", old, restored, b, true)
	// Org c's key is the shared CODEX_KEK, which the operator still holds:
	// the shred deleted c's data keys from the live store only, and the
	// backup's copies of them still unwrap. This is what `crypto status`
	// reports for an org without its own key as backup_openable true,
	// backup "shared", decided by the same test as here: the org has no
	// own master key (OrgKeys.Ref is empty).
	expectSealed(t, "the pre-shred backup", old, restored, sh, true)
	if ref := oldOrgs.Ref(sh.id); ref != "" {
		t.Errorf("org c has its own master key %q; want the shared one", ref)
	}
	if !t.Failed() {
		t.Logf("org c is on the shared master key (CODEX_KEK): after its shred, the backup taken before it still opens its credential, memory, audit content and fingerprint secret with that key (crypto status: backup_openable true, backup \"shared\"); org a, on its own KMS key now scheduled for deletion, opens nothing from the same backup")
	}
	t.Logf("%s run: %s", map[bool]string{false: "sqlite", true: "postgres"}[pg], time.Since(began).Round(time.Millisecond))
}

func noEnv(string) string { return "" }

// newCloud starts two edges on a fresh store.
func newCloud(t *testing.T, pg bool) *cloud {
	c := &cloud{t: t, ctx: context.Background(), kms: kmstest.Local(t), control: canary("control")}
	c.fp = fakeprovider.New(fakeprovider.Options{})
	fake := httptest.NewServer(c.fp)
	t.Cleanup(fake.Close)
	c.fakeURL = fake.URL

	dir := t.TempDir()
	var st2 server.Store
	if pg {
		owner, app := pgtest.FreshDB(t)
		c.owner = owner
		c.st, st2 = pgtest.Open(t, app), pgtest.Open(t, app)
	} else {
		lite, err := sqlite.Open(c.ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lite.Close() })
		c.lite, c.st, st2 = lite, lite, lite
	}
	c.cfg = config.Default()
	c.cfg.Listen, c.cfg.AdminListen, c.cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	c.cfg.ChangePoll = 50 * time.Millisecond
	c.cfg.CacheEnabled = true
	// Two edges on one store, as two instances of one deployment: each
	// its own keyring, key directory, cache and probes.
	for _, st := range []server.Store{c.st, st2} {
		srv, err := server.New(c.ctx, c.cfg, st, slog.New(slog.DiscardHandler), server.Options{Getenv: noEnv})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(c.ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
		c.edges = append(c.edges, srv)
	}
	return c
}

// addTenant creates an org, on a new KMS key of its own or (own false) on
// the edge's default master key, with a sealed credential, audit at level
// full, a memory and a gateway key.
func (c *cloud) addTenant(name string, own bool) *tenant {
	t, ctx, srv := c.t, c.ctx, c.edges[0]
	tn := &tenant{name: name, id: apikey.NewID("org_"), credential: "sk-" + canary("credential-"+name),
		memory: "Answer as " + canary("memory-"+name), prompt: canary("prompt-" + name)}
	o := edge.Org{ID: tn.id, Name: name, CreatedAt: time.Now()}
	if own {
		tn.arn = kmstest.CreateKey(t, c.kms)
		o.MasterKey = "awskms:" + tn.arn
	}
	if err := c.st.CreateOrg(ctx, o); err != nil {
		t.Fatal(err)
	}
	sealed, err := srv.Keyring().Seal(ctx, tn.id, keyring.PurposeCredential, edge.CredentialRecord(edge.OpenAI), []byte(tn.credential))
	if err != nil {
		t.Fatalf("seal org %s's credential: %v", name, err)
	}
	if err := c.st.SetProvider(ctx, edge.ProviderConfig{OrgID: tn.id, Provider: edge.OpenAI, BaseURL: c.fakeURL, SealedKey: sealed}); err != nil {
		t.Fatal(err)
	}
	s, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.st.CreateKey(ctx, edge.APIKey{ID: apikey.NewID("key_"), OrgID: tn.id, Name: c.control, Prefix: apikey.DisplayPrefix(s),
		Hash: apikey.Hash(s), State: edge.KeyActive, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tn.key = s.Reveal()
	body, _ := json.Marshal(map[string]string{"text": tn.memory})
	if st, out := c.admin(srv, "PUT", "/orgs/"+tn.id+"/memories/style", string(body)); st != 200 {
		t.Fatalf("set memory: %d %s", st, out)
	}
	if st, out := c.admin(srv, "PUT", "/orgs/"+tn.id+"/audit/level", `{"level":"full"}`); st != 200 {
		t.Fatalf("set audit level: %d %s", st, out)
	}
	return tn
}

// admin sends one request to an edge's admin API and returns the status
// and body of the answer.
func (c *cloud) admin(e *server.Server, method, path, body string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.ctx, method, "http://"+e.AdminAddr()+"/admin/v1"+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// chat sends the org's prompt as one chat completion through an edge with
// the official SDK and returns the HTTP status, the error code of a
// refusal, and the cache and memory headers of an answer.
func (c *cloud) chat(e *server.Server, tn *tenant) (status int, code, cache, memory string) {
	var resp *http.Response
	cl := openai.NewClient(option.WithBaseURL("http://"+e.Addr()+"/v1"), option.WithAPIKey(tn.key), option.WithMaxRetries(0))
	_, err := cl.Chat.Completions.New(c.ctx, openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("the same question: " + tn.prompt)},
	}, option.WithResponseInto(&resp))
	var apiErr *openai.Error
	switch {
	case errors.As(err, &apiErr):
		return apiErr.StatusCode, apiErr.Code, "", ""
	case err != nil:
		c.t.Fatalf("chat: %v", err)
	}
	return resp.StatusCode, "", resp.Header.Get("X-Codex-Cache"), resp.Header.Get("X-Codex-Memory")
}

func (c *cloud) served(e *server.Server, tn *tenant) bool {
	st, _, cache, mem := c.chat(e, tn)
	return st == 200 && cache == "hit" && mem == "style@1"
}

// readable says whether the org's memory text and the content of its
// latest full audit event can be read through an edge's admin API (memory
// show, audit show), and what the edge answered when not.
func (c *cloud) readable(e *server.Server, tn *tenant) (memory, content bool, why string) {
	st, body := c.admin(e, "GET", "/orgs/"+tn.id+"/memories/style", "")
	var m struct{ Text string }
	memory = st == 200 && json.Unmarshal(body, &m) == nil && m.Text == tn.memory
	if !memory {
		why += fmt.Sprintf("memory: %d %s; ", st, body)
	}
	evs := fullEvents(c.t, c.st, tn)
	if len(evs) == 0 {
		c.t.Fatalf("org %s has no audit event with content", tn.name)
	}
	st, body = c.admin(e, "GET", "/audit/events/"+evs[len(evs)-1].ID, "")
	var ev struct{ Request string }
	content = st == 200 && json.Unmarshal(body, &ev) == nil && strings.Contains(ev.Request, tn.prompt)
	if !content {
		why += fmt.Sprintf("audit content: %d %s", st, body)
	}
	return memory, content, why
}

// adminCode is the error code of an admin API refusal.
func adminCode(body []byte) string {
	var b edge.AdminBody
	_ = json.Unmarshal(body, &b)
	return b.Error.Code
}

// fullEvents returns the org's audit events that hold content.
func fullEvents(t *testing.T, st server.Store, tn *tenant) []edge.AuditEvent {
	t.Helper()
	evs, err := st.AuditEvents(context.Background(), tn.id, edge.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(evs, func(e edge.AuditEvent) bool { return len(e.Content) == 0 })
}

// operatorOpensNone checks that the operator's own master key (CODEX_KEK,
// the key file in the data directory) opens none of the data keys or
// sealed rows of the orgs on their own KMS keys, and does open those of
// the org on it.
func (c *cloud) operatorOpensNone(tenants []*tenant) {
	t, ctx := c.t, c.ctx
	def, _, err := kek.Open(ctx, kek.Spec{Kind: kek.Local}, noEnv, c.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	operator, err := keyring.New(keyring.Options{Store: c.st, Master: def, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range tenants {
		own := tn.arn != ""
		expectSealed(t, "the operator's master key", c.st, operator, tn, !own)
		if !own {
			continue
		}
		deks, err := c.st.DEKs(ctx, tn.id)
		if err != nil || len(deks) == 0 {
			t.Fatalf("data keys of %s: %d, %v", tn.name, len(deks), err)
		}
		for _, d := range deks {
			if d.MasterRef != awskms.Ref || d.MasterVersion != tn.arn {
				t.Errorf("data key of %s wrapped by %s:%s, want its own KMS key", tn.name, d.MasterRef, d.MasterVersion)
			}
			if dek, err := def.Unwrap(ctx, keyring.Binding{OrgID: tn.id, DEKID: d.ID}, keyring.Wrap{Ref: d.MasterRef, Version: d.MasterVersion, Blob: d.Wrapped}); err == nil {
				clear(dek)
				t.Errorf("the operator's master key unwrapped a data key of %s", tn.name)
			}
		}
	}
}

// disableWhileServing disables a's KMS key while both edges serve: within
// 10 s every edge refuses a's requests (503 provider_credential_unavailable)
// and its memory and audit content, while the others are served and
// readable; enabling the key restores a on every edge.
func (c *cloud) disableWhileServing(a *tenant, others ...*tenant) {
	t, ctx := c.t, c.ctx
	if _, err := c.kms.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(a.arn)}); err != nil {
		t.Fatal(err)
	}
	// Both edges count from the disabling; each keeps asking.
	disabled := time.Now()
	for i, e := range c.edges {
		var code string
		testutil.Eventually(t, 10*time.Second-time.Since(disabled), "org a refused on every edge within 10 s of its key being disabled", func() bool {
			var st int
			st, code, _, _ = c.chat(e, a)
			return st == http.StatusServiceUnavailable
		})
		if code != "provider_credential_unavailable" {
			t.Errorf("edge %d: org a refused with code %q, want provider_credential_unavailable", i, code)
		}
		if st, body := c.admin(e, "GET", "/orgs/"+a.id+"/memories/style", ""); st != http.StatusGone || adminCode(body) != "memory_unreadable" {
			t.Errorf("edge %d: org a's memory while its key is disabled: %d %s, want 410 memory_unreadable", i, st, body)
		}
		evs := fullEvents(t, c.st, a)
		if st, body := c.admin(e, "GET", "/audit/events/"+evs[len(evs)-1].ID, ""); st != http.StatusConflict || bytes.Contains(body, []byte(a.prompt)) {
			t.Errorf("edge %d: org a's audit content while its key is disabled: %d %s, want 409", i, st, body)
		}
		for _, tn := range others {
			if !c.served(e, tn) {
				t.Errorf("edge %d: org %s not served while a's key is disabled", i, tn.name)
			}
			if mem, content, why := c.readable(e, tn); !mem || !content {
				t.Errorf("edge %d: org %s unreadable while a's key is disabled: %s", i, tn.name, why)
			}
		}
	}
	t.Logf("org a unreadable on both edges %s after its key was disabled", time.Since(disabled).Round(time.Millisecond))

	if _, err := c.kms.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(a.arn)}); err != nil {
		t.Fatal(err)
	}
	for i, e := range c.edges {
		testutil.Eventually(t, 10*time.Second, "org a served again after its key was enabled", func() bool {
			st, _, _, mem := c.chat(e, a)
			return st == 200 && mem == "style@1"
		})
		if mem, content, why := c.readable(e, a); !mem || !content {
			t.Errorf("edge %d: org a unreadable after its key was enabled: %s", i, why)
		}
		for _, tn := range others {
			if !c.served(e, tn) {
				t.Errorf("edge %d: org %s not served after a's key was enabled", i, tn.name)
			}
		}
	}
}

// sealedRow is the outcome of opening one sealed row: nil when it opened
// to what was sealed.
type sealedRow struct {
	what string
	err  error
}

// openSealed opens, with kr, every sealed row the store holds for the
// org: its provider credential, its memory's text, the content of each
// full audit event and its fingerprint secret.
func openSealed(t *testing.T, st server.Store, kr *keyring.Keyring, tn *tenant) []sealedRow {
	t.Helper()
	ctx := context.Background()
	is := func(pt []byte, err error, want string) error {
		defer clear(pt)
		if err == nil && string(pt) != want {
			return errors.New("opened to another value")
		}
		return err
	}
	var rows []sealedRow
	pcs, err := st.Providers(ctx, tn.id)
	if err != nil || len(pcs) != 1 || len(pcs[0].SealedKey) == 0 {
		t.Fatalf("the sealed credential of %s: %d providers, %v", tn.name, len(pcs), err)
	}
	pt, err := kr.Open(ctx, tn.id, keyring.PurposeCredential, edge.CredentialRecord(edge.OpenAI), pcs[0].SealedKey)
	rows = append(rows, sealedRow{"provider credential", is(pt, err, tn.credential)})

	ms, err := st.Memories(ctx, tn.id)
	if err != nil || len(ms) != 1 {
		t.Fatalf("memories of %s: %d, %v", tn.name, len(ms), err)
	}
	pt, err = kr.Open(ctx, tn.id, keyring.PurposeMemory, edge.MemoryRecord(ms[0].KeyID, ms[0].Name, ms[0].Version), ms[0].Sealed)
	rows = append(rows, sealedRow{"memory text", is(pt, err, tn.memory)})

	evs := fullEvents(t, st, tn)
	if len(evs) == 0 {
		t.Fatalf("org %s has no audit event with content", tn.name)
	}
	// One row for all the events: each opens, or each is refused.
	var opened int
	var auditErr error
	for _, ev := range evs {
		content, err := audit.OpenContent(ctx, kr, ev)
		if err == nil && !bytes.Contains(content.Request, []byte(tn.prompt)) {
			err = fmt.Errorf("event %s opened to a request without the org's prompt", ev.ID)
		}
		if err == nil {
			opened++
		} else if auditErr == nil {
			auditErr = err
		}
	}
	if opened > 0 && auditErr != nil {
		auditErr = fmt.Errorf("%d of %d events opened, not the others: %v", opened, len(evs), auditErr)
	}
	rows = append(rows, sealedRow{fmt.Sprintf("audit content (%d events)", len(evs)), auditErr})

	secret, err := st.FingerprintSecret(ctx, tn.id)
	if err != nil || len(secret) == 0 {
		t.Fatalf("the fingerprint secret of %s: %d bytes, %v", tn.name, len(secret), err)
	}
	pt, err = kr.Open(ctx, tn.id, keyring.PurposeSecret, edge.FingerprintRecord, secret)
	if err == nil && len(pt) == 0 {
		err = errors.New("opened to an empty secret")
	}
	clear(pt)
	rows = append(rows, sealedRow{"fingerprint secret", err})
	return rows
}

// expectSealed checks that kr opens every sealed row the store holds for
// the org (open), or refuses each as unreadable.
func expectSealed(t *testing.T, where string, st server.Store, kr *keyring.Keyring, tn *tenant, open bool) {
	t.Helper()
	for _, r := range openSealed(t, st, kr, tn) {
		switch {
		case open && r.err != nil:
			t.Errorf("%s: org %s's %s does not open: %v", where, tn.name, r.what, r.err)
		case !open && r.err == nil:
			t.Errorf("%s: org %s's %s opens", where, tn.name, r.what)
		case !open && !errors.Is(r.err, keyring.ErrUnreadable):
			t.Errorf("%s: org %s's %s: %v, want a refusal (keyring.ErrUnreadable)", where, tn.name, r.what, r.err)
		}
	}
}

// scanClean fails the test if any org's canary is in a file under dir, as
// it is or hex- or base64-encoded. The gateway keys' name is stored in
// plaintext: the scan must find it, or it could not find a leak either.
func (c *cloud) scanClean(dir string, tenants []*tenant) {
	t := c.t
	t.Helper()
	canaries := []string{c.control}
	for _, tn := range tenants {
		canaries = append(canaries, tn.canaries()...)
	}
	found, err := storetest.FindCanaries(dir, canaries...)
	if err != nil {
		t.Fatal(err)
	}
	control := false
	for _, f := range found {
		if f.Canary == c.control {
			control = true
			continue
		}
		t.Errorf("plaintext canary in the store: %v", f)
	}
	if !control {
		t.Errorf("the scan of %s did not find the gateway key name stored in plaintext (%q): it could not have found a leak", dir, c.control)
	}
}

// backup copies the embedded store's files (database and WAL) from dir to
// into, as a file-level backup taken while the edge runs.
func backup(t *testing.T, dir, into string) {
	t.Helper()
	for _, name := range []string{sqlite.FileName, sqlite.FileName + "-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(into, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// superuser returns raw (a URL of the dev server reached through its Unix
// socket) as its superuser, whom the socket trusts. A logical backup must
// see every org's rows, and row-level security is forced on the owner too:
// only a role that bypasses it, as an operator's backup job runs as, can
// take one.
func superuser(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.Query().Get("host"), "/") {
		t.Fatalf("the Postgres URL does not name the dev server's Unix socket (run this test with scripts/local-kms.sh test)")
	}
	u.User = url.User("postgres")
	return u.String()
}

// pgTool runs a Postgres client tool and fails the test on an error.
func pgTool(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// pgBackup dumps the database at ownerURL (pg_dump, plain SQL: every row of
// every table, bytea as hex) into a file in dir and returns its path.
func pgBackup(t *testing.T, ownerURL, dir string) string {
	t.Helper()
	file := filepath.Join(dir, "backup.sql")
	pgTool(t, "pg_dump", "--no-password", "--file", file, "--dbname", superuser(t, ownerURL))
	return file
}

// pgRestore restores a pgBackup file into a fresh database, dropped when
// the test ends, and opens the edge's store on it as the application role.
func pgRestore(t *testing.T, file string) server.Store {
	t.Helper()
	owner, app := pgtest.EmptyDB(t)
	pgTool(t, "psql", "--no-password", "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--file", file, "--dbname", superuser(t, owner))
	db, err := postgres.Open(context.Background(), app, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
