package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/telemetry"
	"github.com/persiv/codex/shared/wire"
)

// TestTelemetryCommandsPostgres: on Postgres the telemetry commands act on
// the deployment. One replica enrolls; another sees that enrollment,
// switches sharing on without enrolling again, and both list the whole
// deployment's ledger. Nothing lands in the replicas' data directories,
// and the seed is in no table in the clear.
func TestTelemetryCommandsPostgres(t *testing.T) {
	svc, store, api, org := enrollAPI(t)
	owner, app := pgtest.FreshDB(t)
	kek := make([]byte, 32)
	rand.Read(kek)
	replica := func() *cli {
		c := newCLI(t)
		c.env["CODEX_DATABASE_URL"], c.env["CODEX_KEK"], c.env["CODEX_BYOK_KEY"] = app, "byok", hex.EncodeToString(kek)
		return c
	}
	a, b := replica(), replica()
	tok, err := svc.CreateToken(context.Background(), org, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Replica b is configured to enroll with the same token, which it
	// uses only if the deployment is not enrolled.
	b.env["CODEX_CONTROLPLANE_URL"], b.env["CODEX_ENROLLMENT_TOKEN"] = api.URL, tok
	a.ok("telemetry", "enroll", "--url", api.URL, "--token", tok, "--name", "replica-a")

	type status struct {
		Sharing  bool   `json:"sharing"`
		Enrolled bool   `json:"enrolled"`
		EdgeID   string `json:"edge_id"`
	}
	var sa, sb status
	if err := json.Unmarshal([]byte(b.ok("telemetry", "status", "--json")), &sb); err != nil {
		t.Fatal(err)
	}
	if !sb.Enrolled || sb.Sharing {
		t.Fatalf("the other replica's status: %+v", sb)
	}
	b.ok("telemetry", "on") // enrolled already: the token is not used again
	if err := json.Unmarshal([]byte(a.ok("telemetry", "status", "--json")), &sa); err != nil {
		t.Fatal(err)
	}
	if !sa.Sharing || sa.EdgeID != sb.EdgeID {
		t.Fatalf("status on replica a %+v, b %+v", sa, sb)
	}
	edges, err := store.Edges(context.Background(), org)
	if err != nil || len(edges) != 1 || edges[0].ID != sa.EdgeID {
		t.Fatalf("the control plane has %d edges (%v), want one, %s", len(edges), err, sa.EdgeID)
	}

	// Each replica's sender records its batches in the one ledger.
	// The listing shows the random instance id each batch left with.
	st := pgtest.Open(t, app).TelemetryState(postgres.TelemetryOptions{})
	instances := []string{wire.NewInstance(), wire.NewInstance()}
	for i, name := range []string{"replica-a", "replica-b"} {
		e := telemetry.LedgerEntry{Time: time.Now().UTC(), Subject: "s", MsgID: fmt.Sprint("m", i), Seq: int64(i + 1), Instance: name}
		if err := st.AppendLedger(context.Background(), e, []byte(`{"rows":[],"instance":"`+instances[i]+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*cli{a, b} {
		out := c.ok("telemetry", "ledger")
		if strings.Count(out, "enrollment exchange") != 1 || !strings.Contains(out, "seq 1 ") || !strings.Contains(out, "from replica-a") ||
			!strings.Contains(out, "seq 2 ") || !strings.Contains(out, "from replica-b") ||
			!strings.Contains(out, "0 rows  instance "+instances[0]) || !strings.Contains(out, "0 rows  instance "+instances[1]) {
			t.Fatalf("ledger:\n%s", out)
		}
	}

	for _, c := range []*cli{a, b} {
		if _, err := os.Stat(filepath.Join(c.env["CODEX_DATA_DIR"], "telemetry", "enrollment.json")); !os.IsNotExist(err) {
			t.Fatalf("an enrollment file in a replica's data directory (%v)", err)
		}
	}
	conn, err := pgx.Connect(context.Background(), owner)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var dump string
	err = conn.QueryRow(context.Background(), `SELECT (SELECT x::text FROM telemetry_state x) || (SELECT COALESCE(string_agg(y::text, ''), '') FROM telemetry_data_keys y)`).Scan(&dump)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dump, sa.EdgeID) || nkeySeed.MatchString(dump) {
		t.Fatal("the enrollment is not in the database, or its seed is there in the clear")
	}
}
