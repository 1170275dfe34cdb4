// Package wire defines the messages that cross between codex-edge and
// codex-controlplane: the versioned, aggregated usage batch of DESIGN §6,
// and the enrollment exchange (EnrollRequest, EnrollResponse, ErrorBody)
// that gives an edge its credentials.
//
// Versions: 1 carries usage rows; 2 adds the rows' limited and
// budget_refused counts, the batch's budgets and (optional) settings; 3
// adds the memories injected into the window's requests (name, version,
// scope, requests and their tokens, never the text or a digest of it) and
// the count of audit records per capture level (never their content),
// and (optional) the instance: a random id of the edge process that
// aggregated the batch, so the control plane can count the replicas of a
// deployment, which share one edge id.
//
// The batch is deliberately unable to carry content. Every string is a
// bounded identifier whose charset excludes spaces and punctuation that
// prose needs; every number is a bounded counter. Decode is strict: it
// rejects unknown, duplicated or case-folded keys, nulls, oversized values,
// oversized messages and inconsistent counters, so whatever the control
// plane stores went through the same checks that schemas/wire documents.
package wire

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SchemaVersion is the newest version of UsageBatch, the one this package
// encodes by default. Version 2 added the rows' limited and
// budget_refused counts and the batch's budgets; version 3 the batch's
// memories and audit counts.
//
// Decode accepts every version in SchemaVersions, so a control plane keeps
// taking batches from older edges. An older control plane refuses a newer
// version outright (it cannot misread it), so an edge sends the newest
// version its control plane said at enrollment that it accepts
// (EnrollResponse.SchemaVersions; none said: 1), dropping what that
// version cannot carry (UsageBatch.AsVersion). All versions travel on the
// same subject, which the edge's credentials pin.
const SchemaVersion = 3

// SchemaVersions are the versions Decode accepts, oldest first.
var SchemaVersions = []int{1, 2, 3}

// Limits of a batch. They bound what a credentialed but hostile edge can
// make the control plane parse and store.
const (
	// MaxBatchBytes bounds the encoded batch; NATS user permissions carry
	// the same figure as the edge's max payload.
	MaxBatchBytes = 1 << 20
	// MaxRows bounds the rows of one batch.
	MaxRows = 5000
	// MaxCount bounds every counter: the largest integer a JSON number
	// carries exactly in every language (2^53-1).
	MaxCount = 1<<53 - 1
	// MaxWindow bounds a batch's window (window_end - window_start).
	MaxWindow = time.Hour
	// MaxBudgets bounds the budgets of one batch.
	MaxBudgets = 5000
	// MaxMemories bounds the memory uses of one batch.
	MaxMemories = 5000
	// MaxAuditCounts bounds the audit counts of one batch.
	MaxAuditCounts = 5000
)

// Earliest and latest instants a window may name: anything outside is a
// broken clock or a forged batch, not usage.
var (
	minTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ErrInvalid is wrapped by every decoding and validation error. Error
// texts name the field and the rule, never the offending value, so logging
// them cannot leak whatever an edge tried to smuggle.
var ErrInvalid = errors.New("invalid usage batch")

// SubjectPrefix is the NATS subject prefix of version 1 batches; a batch is
// published on SubjectPrefix + "." + org_id + "." + edge_id.
const SubjectPrefix = "codex.usage.v1"

// Subject returns the subject an edge publishes its batches on.
func Subject(orgID, edgeID string) string {
	return SubjectPrefix + "." + orgID + "." + edgeID
}

// ParseSubject splits a batch subject into org and edge id, checking both.
func ParseSubject(subject string) (orgID, edgeID string, err error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return "", "", fmt.Errorf("%w: subject outside %s", ErrInvalid, SubjectPrefix)
	}
	orgID, edgeID, ok = strings.Cut(rest, ".")
	if !ok || !IDChars.Valid(orgID) || !IDChars.Valid(edgeID) {
		return "", "", fmt.Errorf("%w: subject is not %s.<org_id>.<edge_id>", ErrInvalid, SubjectPrefix)
	}
	return orgID, edgeID, nil
}

// MsgID returns the Nats-Msg-Id of a batch, which JetStream uses to drop
// re-sent copies within its duplicate window.
func MsgID(edgeID string, seq int64) string {
	return edgeID + ":" + strconv.FormatInt(seq, 10)
}

// UsageBatch is the aggregated usage of one window, for one control plane
// org, from one edge.
type UsageBatch struct {
	SchemaVersion int        `json:"schema_version"`
	WindowStart   time.Time  `json:"window_start"` // RFC 3339, UTC
	WindowEnd     time.Time  `json:"window_end"`   // RFC 3339, UTC, after WindowStart
	OrgID         string     `json:"org_id"`       // control plane org that enrolled the edge
	EdgeID        string     `json:"edge_id"`
	Seq           int64      `json:"seq"` // per edge, from 1; (edge_id, seq) identifies the batch
	Rows          []UsageRow `json:"rows"`
	// Budgets (version 2) is the use of each budget the edge enforces,
	// in its current period, as the window ended. Empty in version 1.
	Budgets []BudgetUse `json:"budgets"`
	// Settings (version 2), when present, are the edge's metadata
	// minimization settings, so the control plane can show what it is
	// (not) sent. Optional: edges before it do not send it.
	Settings *Settings `json:"settings,omitempty"`
	// Memories (version 3) are the memories the edge injected into the
	// window's requests: names, versions and token counts, never their
	// text, which does not leave the edge. Empty before version 3.
	Memories []MemoryUse `json:"memories"`
	// Audit (version 3) counts the audit records the edge wrote in the
	// window, per workspace and capture level: counts only, never their
	// content. Empty before version 3.
	Audit []AuditCount `json:"audit"`
	// Instance (version 3, optional) is a random id the edge process
	// that aggregated the window draws when it starts (NewInstance):
	// replicas of one deployment share an edge id, so distinct instances
	// are how the control plane counts the replicas reporting. It is
	// derived from nothing about the host, so it names a process, never
	// a machine or a person. Edges before it do not send it.
	Instance string `json:"instance,omitempty"`
}

// InstanceLen is the length of an instance id: 16 random bytes in hex.
const InstanceLen = 32

// NewInstance returns a fresh instance id: 16 bytes from crypto/rand,
// lowercase hex.
func NewInstance() string {
	var b [InstanceLen / 2]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// ValidInstance reports whether s is an instance id: exactly InstanceLen
// bytes of InstanceChars.
func ValidInstance(s string) bool { return len(s) == InstanceLen && InstanceChars.Valid(s) }

// MemoryUse is one memory injected into requests of a window. A batch
// holds at most one per workspace, key reference, name and version.
type MemoryUse struct {
	Workspace string `json:"workspace"`
	// KeyRef is the key whose own memory it is; "none": the workspace's
	// memory, injected for every key.
	KeyRef string `json:"key_ref"`
	// Name and Version are as x-codex-memory shows them (name@version).
	// A withheld memory dimension, or a folded use, is Other with version
	// 0; a memory's own versions start at 1.
	Name     string `json:"name"`
	Version  int64  `json:"version"`
	Requests int64  `json:"requests"` // requests it was injected into
	Tokens   int64  `json:"tokens"`   // its tokens summed over Requests
	// Estimated counts the requests whose Tokens are the edge's estimate
	// rather than a provider's count (0..Requests).
	Estimated int64 `json:"estimated"`
}

// AuditCount is how many audit records of one capture level the edge
// wrote for a workspace's requests in a window. A batch holds at most one
// per workspace and level.
type AuditCount struct {
	Workspace string `json:"workspace"`
	Level     string `json:"level"` // of AuditLevels
	Records   int64  `json:"records"`
}

// AuditLevels are the capture levels of an audit record: none (metadata
// only), hash (digests of the content), full (the content, sealed). The
// content stays on the edge at every level.
var AuditLevels = []string{"none", "hash", "full"}

// BudgetUse is one budget of a workspace (key_ref "none") or of one of its
// keys, and what has been spent of it in the current period.
type BudgetUse struct {
	Workspace    string `json:"workspace"`
	KeyRef       string `json:"key_ref"`
	Period       string `json:"period"` // "day" or "month", UTC
	CapNanoUSD   int64  `json:"cap_nano_usd"`
	SpentNanoUSD int64  `json:"spent_nano_usd"`
}

// Settings are an edge's metadata minimization settings (seed §04).
type Settings struct {
	// Dimensions are the row dimensions the edge sends (of Dimensions);
	// the others arrive as Other.
	Dimensions []string `json:"dimensions"`
	// MinCount: rows of fewer requests were folded into Other rows.
	MinCount int64 `json:"min_count"`
	// HeartbeatS: windows without usage are not sent, but a batch
	// without rows at most every HeartbeatS seconds.
	HeartbeatS int64 `json:"heartbeat_s"`
}

// The dimensions of a row an edge can withhold, and the value a withheld
// (or folded) dimension carries.
const (
	DimWorkspace = "workspace"
	DimProvider  = "provider"
	DimModel     = "model"
	DimKeyRef    = "key_ref"
	// DimMemory (version 3) is the name and version of a memory use; a
	// withheld one arrives as Other, version 0.
	DimMemory = "memory"
	Other     = "other"
)

// Dimensions lists every dimension an edge can withhold. Cache status and
// status class are small fixed sets and always sent.
var Dimensions = []string{DimWorkspace, DimProvider, DimModel, DimKeyRef, DimMemory}

// dimensionsV2 are the dimensions a version 2 batch's settings may name.
var dimensionsV2 = Dimensions[:4]

// UsageRow aggregates the requests of a window that share every key field.
// A batch holds at most one row per key.
type UsageRow struct {
	Workspace   string      `json:"workspace"` // the edge's own org: a pseudonym unless the customer opts into names
	Provider    string      `json:"provider"`
	Model       string      `json:"model"`
	KeyRef      string      `json:"key_ref"` // gateway key: HMAC pseudonym unless the customer opts into names
	CacheStatus CacheStatus `json:"cache_status"`
	StatusClass StatusClass `json:"status_class"`

	Requests    int64  `json:"requests"`
	Input       Tokens `json:"input"` // disjoint from CachedInput and CacheWrite
	CachedInput Tokens `json:"cached_input"`
	CacheWrite  Tokens `json:"cache_write"`
	Output      Tokens `json:"output"`
	Reasoning   Tokens `json:"reasoning"` // a part of Output, as OpenAI reports it

	CostNanoUSD  int64 `json:"cost_nano_usd"`  // 1e-9 USD, over requests whose cost is known
	CostUnknown  int64 `json:"cost_unknown"`   // requests whose cost could not be computed
	SavedNanoUSD int64 `json:"saved_nano_usd"` // what cache hits saved

	// Limited and BudgetRefused (version 2) count the requests the edge
	// refused because of a rate limit or a budget; 0 in version 1.
	Limited       int64 `json:"limited"`
	BudgetRefused int64 `json:"budget_refused"`

	// LatencyMS counts requests by latency; bucket i holds latencies in
	// (LatencyBoundsMS[i-1], LatencyBoundsMS[i]] and the last bucket
	// those above the largest bound. Its counts add up to Requests.
	LatencyMS [LatencyBuckets]int64 `json:"latency_ms"`
}

// Key returns the row's key fields, which are unique within a batch.
func (r *UsageRow) Key() RowKey {
	return RowKey{r.Workspace, r.Provider, r.Model, r.KeyRef, r.CacheStatus, r.StatusClass}
}

// RowKey is the identity of a row within a batch.
type RowKey struct {
	Workspace, Provider, Model, KeyRef string
	CacheStatus                        CacheStatus
	StatusClass                        StatusClass
}

// Tokens is one kind of token counter summed over a row's requests. A
// provider that does not report a figure makes it unknown: such requests
// are counted in Unknown and add nothing to Sum, so zero never stands in
// for "not reported".
type Tokens struct {
	Sum     int64 `json:"sum"`
	Unknown int64 `json:"unknown"` // requests whose count was not reported
}

// CacheStatus is what the edge's response cache did.
type CacheStatus string

const (
	CacheHit    CacheStatus = "hit"
	CacheMiss   CacheStatus = "miss"
	CacheBypass CacheStatus = "bypass"
)

// CacheStatuses lists every valid CacheStatus.
var CacheStatuses = []CacheStatus{CacheHit, CacheMiss, CacheBypass}

// StatusClass is the class of the HTTP status the client received;
// "error" means no status (the request failed before one was sent).
type StatusClass string

const (
	Status1xx   StatusClass = "1xx"
	Status2xx   StatusClass = "2xx"
	Status3xx   StatusClass = "3xx"
	Status4xx   StatusClass = "4xx"
	Status5xx   StatusClass = "5xx"
	StatusError StatusClass = "error"
)

// StatusClasses lists every valid StatusClass.
var StatusClasses = []StatusClass{Status1xx, Status2xx, Status3xx, Status4xx, Status5xx, StatusError}

// ClassOf returns the class of an HTTP status code; 0 or an out-of-range
// code is StatusError.
func ClassOf(status int) StatusClass {
	switch {
	case status >= 100 && status < 200:
		return Status1xx
	case status >= 200 && status < 300:
		return Status2xx
	case status >= 300 && status < 400:
		return Status3xx
	case status >= 400 && status < 500:
		return Status4xx
	case status >= 500 && status < 600:
		return Status5xx
	}
	return StatusError
}

// LatencyBuckets is the number of latency histogram buckets.
const LatencyBuckets = len(LatencyBoundsMS) + 1

// LatencyBoundsMS are the inclusive upper bounds, in milliseconds, of the
// latency histogram's buckets; one more bucket counts everything above the
// last. They are part of the wire contract: changing them is a new version.
var LatencyBoundsMS = [...]int64{10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000}

// LatencyBucket returns the histogram bucket of a latency.
func LatencyBucket(d time.Duration) int {
	// Round up so that 10.2 ms does not land in the ≤10 ms bucket.
	ms := (d + time.Millisecond - 1) / time.Millisecond
	for i, b := range LatencyBoundsMS {
		if int64(ms) <= b {
			return i
		}
	}
	return len(LatencyBoundsMS)
}
