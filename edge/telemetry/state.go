package telemetry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/shared/wire"
)

// Dir is the telemetry directory inside the edge's data directory. Every
// file is private to the edge's user (0600, directory 0700):
//
//	keys.json        wrapped data keys of KeyOrg (see KeyStore)
//	enrollment.json  edge id, control plane org, NATS URL, subject, user JWT, sealed seed
//	sharing.json     the customer's switch: {"on": bool, "changed_at": …}
//	progress.json    last sequence number used, last batch acknowledged
//	spool/           batches not yet acknowledged, one file per sequence number
//	ledger.jsonl     every batch that left, appended before it is sent
type Dir string

// DirIn returns the telemetry directory of a data directory.
func DirIn(dataDir string) Dir { return Dir(filepath.Join(dataDir, "telemetry")) }

func (d Dir) path(name string) string { return filepath.Join(string(d), name) }

// Ensure creates the directory.
func (d Dir) Ensure() error {
	if err := os.MkdirAll(d.path("spool"), 0o700); err != nil {
		return fmt.Errorf("telemetry directory: %w", err)
	}
	return nil
}

// LedgerPath is the egress ledger's file.
func (d Dir) LedgerPath() string { return d.path("ledger.jsonl") }

// KeyStorePath is the file of KeyStore.
func (d Dir) KeyStorePath() string { return d.path("keys.json") }

// Enrollment is what enrolling the edge produced.
type Enrollment struct {
	ControlPlaneURL string    `json:"control_plane_url"`
	EdgeID          string    `json:"edge_id"`
	OrgID           string    `json:"org_id"` // control plane org
	NATSURL         string    `json:"nats_url"`
	Subject         string    `json:"subject"`
	InboxPrefix     string    `json:"inbox_prefix"`
	UserJWT         string    `json:"user_jwt"`
	PublicKey       string    `json:"public_key"`
	SealedSeed      []byte    `json:"sealed_seed"`      // keyring: KeyOrg, purpose telemetry
	SealedPseudonym []byte    `json:"sealed_pseudonym"` // keyring: KeyOrg, purpose telemetry
	EnrolledAt      time.Time `json:"enrolled_at"`
	// SchemaVersions are the usage batch versions the control plane said
	// it accepts; none: version 1 only (wire.Negotiate).
	SchemaVersions []int `json:"schema_versions,omitempty"`
}

// Enrollment reads the enrollment; ok is false when the edge is not enrolled.
func (d Dir) Enrollment() (e Enrollment, ok bool, err error) {
	ok, err = readJSON(d.path("enrollment.json"), &e)
	return e, ok, err
}

// Sharing is the customer's switch.
type Sharing struct {
	On        bool      `json:"on"`
	ChangedAt time.Time `json:"changed_at"`
	By        string    `json:"by"` // "cli" or "admin-api"
}

// Sharing reads the switch; absent means off.
func (d Dir) Sharing() (Sharing, error) {
	var s Sharing
	_, err := readJSON(d.path("sharing.json"), &s)
	return s, err
}

// SetSharing writes the switch.
func (d Dir) SetSharing(on bool, by string) error {
	if err := d.Ensure(); err != nil {
		return err
	}
	return writeJSON(d.path("sharing.json"), Sharing{On: on, ChangedAt: time.Now().UTC(), By: by})
}

// Progress is the delivery state that must survive restarts.
type Progress struct {
	LastSeq     int64     `json:"last_seq"`      // highest sequence number given to a batch
	LedgerSeq   int64     `json:"ledger_seq"`    // highest sequence number written to the ledger
	LastSentSeq int64     `json:"last_sent_seq"` // highest acknowledged
	LastSentAt  time.Time `json:"last_sent_at"`
}

// Progress reads the delivery state.
func (d Dir) Progress() (Progress, error) {
	var p Progress
	_, err := readJSON(d.path("progress.json"), &p)
	return p, err
}

func (d Dir) saveProgress(p Progress) error { return writeJSON(d.path("progress.json"), p) }

// State is the hybrid link's persistent state: the enrollment, the
// sharing switch, the batch sequence, the spool and the egress ledger.
// Files keeps it in the data directory, for one instance (SQLite); the
// Postgres store keeps it in the database (postgres.TelemetryState),
// shared by every replica of a deployment, which then publishes under one
// identity with one sequence.
type State interface {
	EnrollState
	// Enrollment reads the enrollment; ok is false when not enrolled.
	Enrollment(ctx context.Context) (e Enrollment, ok bool, err error)
	// Sharing reads the switch; absent means off.
	Sharing(ctx context.Context) (Sharing, error)
	// SetSharing writes the switch.
	SetSharing(ctx context.Context, sh Sharing) error
	// Progress reads the delivery state (LedgerSeq is not reported).
	Progress(ctx context.Context) (Progress, error)
	// NextSeq allocates a batch sequence number no caller, on any
	// replica, was given before.
	NextSeq(ctx context.Context) (int64, error)
	// Put spools a batch and returns how many of the oldest batches the
	// spool's bounds dropped.
	Put(ctx context.Context, seq int64, data []byte) (dropped int, err error)
	// Claim returns the oldest spooled batch no other sender holds, and
	// holds it for this sender for a lease (shared state) so that a batch
	// a stopped replica held is sent by another once the lease expires;
	// ok is false when there is none.
	Claim(ctx context.Context) (c Claimed, ok bool, err error)
	// Ack removes a batch from the spool: sent, when acknowledged (the
	// progress then records it), or dropped.
	Ack(ctx context.Context, seq int64, sent bool) error
	// SpoolStats reports the spool's depth and bounds.
	SpoolStats(ctx context.Context) (SpoolStats, error)
	// Ledger returns every ledger entry, oldest first.
	Ledger(ctx context.Context) ([]LedgerEntry, error)
}

// ErrUnavailable marks a State error that says the state could not be
// reached (the database is down), not that it is unreadable: the service
// then keeps the switch and enrollment as last read instead of switching
// sharing off.
var ErrUnavailable = errors.New("telemetry state unavailable")

// EnrollState is the part of State that enrolling uses; a Dir has it.
type EnrollState interface {
	// Enrolling runs fn holding the deployment's enrollment lock, with
	// the enrollment as it is then; when fn returns store true, its
	// enrollment replaces the stored one before the lock is released.
	// Replicas racing to enroll thus take turns, and the later ones see
	// the first one's enrollment (the token is single-use).
	Enrolling(ctx context.Context, fn func(cur Enrollment, ok bool) (next Enrollment, store bool, err error)) error
	// AppendLedger appends e for data to the egress ledger. A usage
	// batch (Kind "") is recorded once per sequence number: appending
	// one already recorded does nothing, so a retry, from any replica,
	// is the same entry.
	AppendLedger(ctx context.Context, e LedgerEntry, data []byte) error
}

// Claimed is a spooled batch claimed for sending.
type Claimed struct {
	Seq  int64
	Data []byte
	// Retaken is true when another sender held the batch before and its
	// lease expired: it may have published it already.
	Retaken bool
}

// Enroll creates the edge's NATS user key pair, sends only its public half
// with the one-time token to the control plane at cpURL, and stores the
// answer in st with the private seed sealed by kr (org KeyOrg, purpose
// telemetry), replacing any earlier enrollment. Sharing stays as it was
// (off unless switched on).
func Enroll(ctx context.Context, st EnrollState, kr *keyring.Keyring, client *http.Client, cpURL, token, name, version string) (Enrollment, error) {
	return enroll(ctx, st, kr, client, cpURL, token, name, version, false)
}

// EnrollOnce is Enroll unless the deployment is enrolled already, in which
// case it returns that enrollment and makes no connection: replicas that
// start at once with the same single-use token enroll once, and all use
// the first one's identity.
func EnrollOnce(ctx context.Context, st EnrollState, kr *keyring.Keyring, client *http.Client, cpURL, token, name, version string) (Enrollment, error) {
	return enroll(ctx, st, kr, client, cpURL, token, name, version, true)
}

func enroll(ctx context.Context, st EnrollState, kr *keyring.Keyring, client *http.Client, cpURL, token, name, version string, once bool) (Enrollment, error) {
	u, err := url.Parse(cpURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Enrollment{}, fmt.Errorf("control plane URL %q: want https://host[:port]", cpURL)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return Enrollment{}, fmt.Errorf("control plane URL %q: plain http is allowed only on loopback; use https", cpURL)
	}
	var out Enrollment
	err = st.Enrolling(ctx, func(cur Enrollment, ok bool) (Enrollment, bool, error) {
		if once && ok {
			out = cur
			return cur, false, nil
		}
		e, err := exchangeEnrollment(ctx, st, kr, client, u, token, name, version, cur, ok)
		out = e
		return e, err == nil, err
	})
	if err != nil {
		return Enrollment{}, err
	}
	return out, nil
}

// exchangeEnrollment makes the key pair, seals its seed and enrolls it.
func exchangeEnrollment(ctx context.Context, st EnrollState, kr *keyring.Keyring, client *http.Client, u *url.URL, token, name, version string, old Enrollment, enrolled bool) (Enrollment, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Enrollment{}, fmt.Errorf("create nats user key: %w", err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return Enrollment{}, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return Enrollment{}, err
	}
	defer clear(seed)
	sealedSeed, err := kr.Seal(ctx, KeyOrg, keyring.PurposeTelemetry, recordSeed, seed)
	if err != nil {
		return Enrollment{}, fmt.Errorf("seal the nats seed: %w", err)
	}
	sealedPseudo := old.SealedPseudonym
	if !enrolled || len(sealedPseudo) == 0 {
		secret := make([]byte, 32)
		rand.Read(secret)
		sealedPseudo, err = kr.Seal(ctx, KeyOrg, keyring.PurposeTelemetry, recordPseudonym, secret)
		clear(secret)
		if err != nil {
			return Enrollment{}, fmt.Errorf("seal the pseudonym secret: %w", err)
		}
	}
	// Re-enrolling keeps the pseudonyms stable.

	body, _ := json.Marshal(wire.EnrollRequest{Token: token, PublicKey: pub, Name: name, Version: version})
	endpoint := strings.TrimRight(u.String(), "/") + wire.EnrollPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return Enrollment{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	rec := EnrollmentRecord{URL: endpoint, Request: wire.EnrollRequest{Token: Elided, PublicKey: pub, Name: name, Version: version}}
	r, err := exchange(client, req, &rec)
	// Whatever left is in the ledger, a refused or failed exchange too.
	if lerr := recordEnrollment(ctx, st, rec); lerr != nil {
		return Enrollment{}, lerr
	}
	if err != nil {
		return Enrollment{}, err
	}
	return Enrollment{
		ControlPlaneURL: strings.TrimRight(u.String(), "/"), EdgeID: r.EdgeID, OrgID: r.OrgID, NATSURL: r.NATSURL,
		Subject: r.Subject, InboxPrefix: r.InboxPrefix, UserJWT: r.UserJWT, PublicKey: pub,
		SealedSeed: sealedSeed, SealedPseudonym: sealedPseudo, EnrolledAt: time.Now().UTC(),
		SchemaVersions: r.SchemaVersions,
	}, nil
}

// exchange sends the enrollment request and reads the answer, noting in
// rec what came back (secrets elided).
func exchange(client *http.Client, req *http.Request, rec *EnrollmentRecord) (wire.EnrollResponse, error) {
	resp, err := client.Do(req)
	if err != nil {
		rec.Error = err.Error()
		return wire.EnrollResponse{}, fmt.Errorf("enroll at %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	rec.Status = resp.StatusCode
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		rec.Error = err.Error()
		return wire.EnrollResponse{}, fmt.Errorf("enroll: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e wire.ErrorBody
		// Best effort: an answer not in our error shape leaves e empty.
		_ = json.Unmarshal(raw, &e)
		rec.Error = e.Error.Code + " " + e.Error.Message
		return wire.EnrollResponse{}, fmt.Errorf("enroll refused (%s): %s %s", resp.Status, e.Error.Code, e.Error.Message)
	}
	var r wire.EnrollResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		rec.Error = "malformed answer"
		return wire.EnrollResponse{}, fmt.Errorf("enroll: malformed answer: %w", err)
	}
	shown := r
	if shown.UserJWT != "" {
		shown.UserJWT = Elided
	}
	rec.Response = &shown
	if !wire.IDChars.Valid(r.EdgeID) || !wire.IDChars.Valid(r.OrgID) || r.Subject != wire.Subject(r.OrgID, r.EdgeID) || r.UserJWT == "" || r.NATSURL == "" {
		rec.Error = "incomplete answer"
		return wire.EnrollResponse{}, errors.New("enroll: the control plane's answer is incomplete or names another subject")
	}
	return r, nil
}

// recordEnrollment appends the enrollment exchange to the egress ledger.
func recordEnrollment(ctx context.Context, st EnrollState, rec EnrollmentRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	e := LedgerEntry{Kind: KindEnrollment, Time: time.Now().UTC()}
	if rec.Response != nil {
		e.Subject = rec.Response.Subject
	}
	return st.AppendLedger(ctx, e, data)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
