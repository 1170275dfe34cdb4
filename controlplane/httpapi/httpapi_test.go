package httpapi_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/httpapi"
	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/shared/wire"
)

func post(t *testing.T, url, contentType, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/api/v1/enroll", contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") != httpapi.HSTS {
		t.Errorf("no HSTS header on %d response", resp.StatusCode)
	}
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func request(t *testing.T, token string) (string, nkeys.KeyPair) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	data, _ := json.Marshal(wire.EnrollRequest{Token: token, PublicKey: pub, Name: "edge-eu-1", Version: "0.3.1"})
	return string(data), kp
}

func TestEnrollOverHTTP(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	srv := httptest.NewServer((&httpapi.API{Enroll: env.Enroll}).Handler())
	defer srv.Close()
	ctx := context.Background()
	org := env.Org(t)
	tok, err := env.Enroll.CreateToken(ctx, org, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, enroll.TokenPrefix) {
		t.Fatalf("token %q lacks its prefix", tok)
	}

	body, kp := request(t, tok)
	status, out := post(t, srv.URL, "application/json", body)
	if status != http.StatusOK {
		t.Fatalf("enroll: %d %s", status, out)
	}
	var resp wire.EnrollResponse
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		t.Fatal(err)
	}
	if resp.OrgID != org || resp.Subject != wire.Subject(org, resp.EdgeID) || resp.UserJWT == "" || resp.NATSURL == "" {
		t.Fatalf("response = %+v", resp)
	}

	// The credentials publish on their own subject.
	ed := testenv.Edge{EnrollResponse: resp, Key: kp}
	nc, err := ed.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := js.Publish(pctx, resp.Subject, []byte("{}")); err != nil {
		t.Fatalf("publish on own subject: %v", err)
	}
	pctx2, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if _, err := js.Publish(pctx2, wire.Subject(org, "edge_other"), []byte("{}")); err == nil {
		t.Fatal("published on another edge's subject")
	}

	// Replayed, expired, unknown and malformed tokens get one answer.
	expiring, err := env.Enroll.CreateToken(ctx, org, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	env.Enroll.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	unknown, _ := enroll.NewToken()
	var answers []string
	for name, token := range map[string]string{"replay": tok, "expired": expiring, "unknown": unknown, "malformed": "hello"} {
		body, _ := request(t, token)
		status, out := post(t, srv.URL, "application/json", body)
		if status != http.StatusUnauthorized {
			t.Errorf("%s token: %d %s", name, status, out)
		}
		answers = append(answers, out)
	}
	for _, a := range answers[1:] {
		if a != answers[0] {
			t.Errorf("answers differ, an oracle: %q vs %q", a, answers[0])
		}
	}

	fresh, _ := env.Enroll.CreateToken(ctx, org, time.Hour)
	good, _ := request(t, fresh)
	for _, tc := range []struct {
		name, ctype, body string
		want              int
	}{
		{"unknown field", "application/json", strings.Replace(good, `{`, `{"prompt":"x",`, 1), http.StatusBadRequest},
		{"form body", "application/x-www-form-urlencoded", "token=" + fresh, http.StatusUnsupportedMediaType},
		{"trailing data", "application/json", good + "{}", http.StatusBadRequest},
		{"too large", "application/json", `{"name":"` + strings.Repeat("a", httpapi.MaxEnrollBody) + `"}`, http.StatusRequestEntityTooLarge},
		{"bad public key", "application/json", `{"token":"` + fresh + `","public_key":"not-a-key","name":"e","version":"1"}`, http.StatusBadRequest},
		{"name with spaces", "application/json", strings.Replace(good, "edge-eu-1", "my edge", 1), http.StatusBadRequest},
	} {
		if status, out := post(t, srv.URL, tc.ctype, tc.body); status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, status, out, tc.want)
		}
	}
	// None of the refused requests used the token up.
	if status, out := post(t, srv.URL, "application/json", good); status != http.StatusOK {
		t.Fatalf("fresh token after refused requests: %d %s", status, out)
	}
}

func TestHealth(t *testing.T) {
	ready := error(nil)
	api := &httpapi.API{Ready: func(context.Context) error { return ready }}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d", path, resp.StatusCode)
		}
	}
	ready = io.ErrUnexpectedEOF
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while not ready = %d", resp.StatusCode)
	}
}

func TestTransport(t *testing.T) {
	if _, err := httpapi.Listen("0.0.0.0:0", nil); err == nil {
		t.Fatal("plain HTTP accepted on a non-loopback address")
	}
	conf, err := httpapi.TLSConfig(testenv.SelfSigned(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := httpapi.Listen("127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpapi.Serve(ctx, ln, (&httpapi.API{}).Handler()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	addr := ln.Addr().String()
	if c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Fatal("TLS 1.2 handshake accepted")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.TLS.Version != tls.VersionTLS13 || resp.Header.Get("Strict-Transport-Security") != httpapi.HSTS {
		t.Fatalf("TLS version %x, HSTS %q", resp.TLS.Version, resp.Header.Get("Strict-Transport-Security"))
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
}
