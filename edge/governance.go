package edge

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limit is a rate limit of an org (KeyID empty) or of one of its keys:
// requests per minute and tokens (input + output) per minute. Zero means
// no limit of that kind; a Limit with both zero is no limit at all.
type Limit struct {
	OrgID     string
	KeyID     string // empty: the org's own limit, shared by all its keys
	RPM       int64
	TPM       int64
	UpdatedAt time.Time
}

// MaxLimit bounds RPM and TPM: far above any real limit, and small enough
// that a GCRA's arithmetic in nanoseconds never overflows.
const MaxLimit = 1 << 40

// Prepare checks that l can be stored and sets a zero UpdatedAt to now.
func (l *Limit) Prepare() error {
	if l.OrgID == "" {
		return fmt.Errorf("limit: org id is required: %w", ErrInvalid)
	}
	if l.RPM < 0 || l.TPM < 0 || l.RPM > MaxLimit || l.TPM > MaxLimit {
		return fmt.Errorf("limit: rpm and tpm must be between 0 and %d: %w", int64(MaxLimit), ErrInvalid)
	}
	l.UpdatedAt = nowIfZero(l.UpdatedAt)
	return nil
}

// None reports whether l limits nothing (and so is removed when set).
func (l Limit) None() bool { return l.RPM == 0 && l.TPM == 0 }

// Period is a budget's period: a UTC day or a UTC month.
type Period string

const (
	Day   Period = "day"
	Month Period = "month"
)

// Valid reports whether p is a known period.
func (p Period) Valid() bool { return p == Day || p == Month }

// Start returns the start of the period that contains t, in UTC.
func (p Period) Start(t time.Time) time.Time {
	t = t.UTC()
	if p == Month {
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// End returns the end of the period that starts at start: the start of
// the next one.
func (p Period) End(start time.Time) time.Time {
	if p == Month {
		return start.AddDate(0, 1, 0)
	}
	return start.AddDate(0, 0, 1)
}

// Budget is a spend cap of an org (KeyID empty) or of one of its keys, per
// period. An org or key has at most one budget per period.
type Budget struct {
	OrgID      string
	KeyID      string // empty: the org's own budget, shared by all its keys
	Period     Period
	CapNanoUSD int64 // 1e-9 USD; zero removes the budget when set
	UpdatedAt  time.Time
}

// MaxBudgetNanoUSD bounds a budget's cap: one billion USD.
const MaxBudgetNanoUSD = 1_000_000_000 * 1_000_000_000

// Prepare checks that b can be stored and sets a zero UpdatedAt to now.
func (b *Budget) Prepare() error {
	if b.OrgID == "" || !b.Period.Valid() {
		return fmt.Errorf("budget: org id and a period (day or month) are required: %w", ErrInvalid)
	}
	if b.CapNanoUSD < 0 || b.CapNanoUSD > MaxBudgetNanoUSD {
		return fmt.Errorf("budget: the cap must be between 0 and 1000000000 USD: %w", ErrInvalid)
	}
	b.UpdatedAt = nowIfZero(b.UpdatedAt)
	return nil
}

// Spend is money settled in one period by an org (KeyID empty: all its
// keys together) or one of its keys. The store adds it up: the settled
// spend of a period survives restarts and Redis flushes.
type Spend struct {
	OrgID   string
	KeyID   string
	Period  Period
	Start   time.Time // the period's start (Period.Start)
	NanoUSD int64
}

// Check reports whether s can be added.
func (s *Spend) Check() error {
	if s.OrgID == "" || !s.Period.Valid() || !s.Start.Equal(s.Period.Start(s.Start)) || s.NanoUSD < 0 {
		return fmt.Errorf("spend: org id, a period, its start and a non-negative amount are required: %w", ErrInvalid)
	}
	return nil
}

// ParseUSD reads a non-negative decimal amount of USD ("12.50", "0.001",
// "100") into nano-USD exactly: no float, at most nine decimals, at most
// one billion USD.
func ParseUSD(s string) (int64, error) {
	s = strings.TrimSpace(s)
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 9 || !allDigits(whole) || !allDigits(frac) || (strings.Contains(s, ".") && frac == "") {
		return 0, fmt.Errorf("%q is not an amount of USD such as 12.50: %w", s, ErrInvalid)
	}
	if len(whole) > 10 {
		return 0, fmt.Errorf("%q is over one billion USD: %w", s, ErrInvalid)
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	}
	n := w*1_000_000_000 + f
	if n > MaxBudgetNanoUSD {
		return 0, fmt.Errorf("%q is over one billion USD: %w", s, ErrInvalid)
	}
	return n, nil
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatUSD writes nano-USD as a decimal amount of USD without trailing
// zeros ("12.5", "0.000001", "3"): exact, unlike a float.
func FormatUSD(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := strconv.FormatInt(n/1_000_000_000, 10)
	if f := n % 1_000_000_000; f != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%09d", f), "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// LimitFor returns the limit of keyID (empty: the org's) among ls, or a
// Limit of the org and key that limits nothing.
func LimitFor(ls []Limit, orgID, keyID string) Limit {
	for _, l := range ls {
		if l.KeyID == keyID {
			return l
		}
	}
	return Limit{OrgID: orgID, KeyID: keyID}
}

// LimitJSON is a limit as `limits list --json` and the admin API show it.
type LimitJSON struct {
	OrgID string `json:"org_id"`
	KeyID string `json:"key_id"`
	RPM   int64  `json:"rpm"`
	TPM   int64  `json:"tpm"`
}

// JSON returns l as LimitJSON.
func (l Limit) JSON() LimitJSON {
	return LimitJSON{OrgID: l.OrgID, KeyID: l.KeyID, RPM: l.RPM, TPM: l.TPM}
}

// BudgetJSON is a budget and its use in the current period, as
// `budgets list --json` and the admin API show it (amounts in USD as
// decimal numbers).
type BudgetJSON struct {
	OrgID       string      `json:"org_id"`
	KeyID       string      `json:"key_id"`
	Period      Period      `json:"period"`
	CapUSD      json.Number `json:"cap_usd"`
	SpentUSD    json.Number `json:"spent_usd"`
	ReservedUSD json.Number `json:"reserved_usd"`
	PeriodEnd   time.Time   `json:"period_end"`
}

// BudgetUse is a budget and its use in one period: what is settled, and
// what requests in progress hold reserved.
type BudgetUse struct {
	Budget
	Start           time.Time // the period's start
	SpentNanoUSD    int64
	ReservedNanoUSD int64
}

// JSON returns u as BudgetJSON.
func (u BudgetUse) JSON() BudgetJSON {
	return BudgetJSON{
		OrgID: u.OrgID, KeyID: u.KeyID, Period: u.Period,
		CapUSD: json.Number(FormatUSD(u.CapNanoUSD)), SpentUSD: json.Number(FormatUSD(u.SpentNanoUSD)),
		ReservedUSD: json.Number(FormatUSD(u.ReservedNanoUSD)), PeriodEnd: u.Period.End(u.Start),
	}
}
