package audit

import (
	"encoding/hex"
	"time"
	"unicode/utf8"

	"github.com/persiv/codex/edge"
)

// Item is an event as `audit list --json` and the admin API list it: one
// JSON object per event (DESIGN §10).
type Item struct {
	Seq      int64             `json:"seq"`
	ID       string            `json:"id"`
	Time     time.Time         `json:"time"`
	Kind     edge.AuditKind    `json:"kind"`
	Level    edge.AuditLevel   `json:"level"` // of a request; "" for an admin change
	KeyID    string            `json:"key_id"`
	Provider string            `json:"provider,omitempty"`
	Endpoint string            `json:"endpoint,omitempty"`
	Model    string            `json:"model"`
	Status   int               `json:"status"`
	Tokens   *Tokens           `json:"tokens"`
	CostUSD  *float64          `json:"cost_usd"` // null when unknown
	Cache    string            `json:"cache"`
	Memory   string            `json:"memory"`
	Action   string            `json:"action,omitempty"`
	Actor    string            `json:"actor,omitempty"`
	Via      string            `json:"via,omitempty"`
	Target   string            `json:"target,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
	// Content is "sealed" (level full, readable with audit show),
	// "removed:retention" or "removed:shred", "digests" (level hash) or
	// "none".
	Content string `json:"content"`
}

// ItemOf lists e.
func ItemOf(e edge.AuditEvent) (Item, error) {
	m, err := ParseMeta(e.Meta)
	if err != nil {
		return Item{}, err
	}
	it := Item{
		Seq: e.Seq, ID: e.ID, Time: m.Time, Kind: m.Kind, Level: m.Level, KeyID: m.KeyID,
		Provider: m.Provider, Endpoint: m.Endpoint, Model: m.Model, Status: m.Status, Tokens: m.Tokens,
		Cache: m.Cache, Memory: m.Memory, Action: m.Action, Actor: m.Actor, Via: m.Via, Target: m.Target, Details: m.Details,
		Content: "none",
	}
	if m.CostNanoUSD != nil {
		usd := float64(*m.CostNanoUSD) / 1e9
		it.CostUSD = &usd
	}
	switch {
	case e.ContentRemoved != "":
		it.Content = "removed:" + e.ContentRemoved
	case len(e.Content) > 0:
		it.Content = "sealed"
	case len(e.RequestDigest) > 0:
		it.Content = "digests"
	}
	return it, nil
}

// Record is an event as `audit export` writes it: its listing, and what
// the chain covers, so that the chain can be verified elsewhere: Meta is
// the exact metadata text hashed, the hashes and digests in hex. Never
// content.
type Record struct {
	Item
	OrgID          string `json:"org_id"`
	Meta           string `json:"meta"`
	RequestDigest  string `json:"request_digest,omitempty"`
	ResponseDigest string `json:"response_digest,omitempty"`
	PrevHash       string `json:"prev_hash"`
	Hash           string `json:"hash"`
}

// RecordOf exports e.
func RecordOf(e edge.AuditEvent) (Record, error) {
	it, err := ItemOf(e)
	if err != nil {
		return Record{}, err
	}
	return Record{Item: it, OrgID: e.OrgID, Meta: string(e.Meta),
		RequestDigest: hex.EncodeToString(e.RequestDigest), ResponseDigest: hex.EncodeToString(e.ResponseDigest),
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}, nil
}

// Shown is an event with its content, as `audit show --json` and the
// admin API show it. Content that is not valid UTF-8 is given in base64
// instead, so it is never altered.
type Shown struct {
	Item
	Request        *string `json:"request,omitempty"`
	Response       *string `json:"response,omitempty"`
	RequestBase64  []byte  `json:"request_base64,omitempty"`
	ResponseBase64 []byte  `json:"response_base64,omitempty"`
}

// ShownOf shows e with its opened content c.
func ShownOf(it Item, c Content) Shown {
	s := Shown{Item: it}
	if utf8.Valid(c.Request) {
		r := string(c.Request)
		s.Request = &r
	} else {
		s.RequestBase64 = c.Request
	}
	if utf8.Valid(c.Response) {
		r := string(c.Response)
		s.Response = &r
	} else {
		s.ResponseBase64 = c.Response
	}
	return s
}
