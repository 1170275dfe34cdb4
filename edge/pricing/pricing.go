// Package pricing prices token usage with a versioned table of list
// prices shipped inside the binary (prices.json): the edge runs air-gapped
// and never fetches prices. Operators override or extend the table with a
// file of the same format.
//
// Prices are written as decimal strings in USD per million tokens and held
// as integers, nano-USD per million tokens, so no float rounding happens
// anywhere. A cost is computed exactly as the sum over buckets of tokens ×
// rate (units of 1e-15 USD, in 128 bits) and rounded once, at the end, to
// the nearest nano-USD, halves rounded up.
//
// A cost is known only when the model is priced and every bucket the model
// bills is known; a figure that is not known makes the cost unknown rather
// than a guess.
package pricing

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"os"
	"sync"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/usage"
)

//go:embed prices.json
var embedded []byte

// Rate is a price in nano-USD (1e-9 USD) per million tokens. Set is false
// when the table gives no price for the bucket.
type Rate struct {
	NanoUSDPerMTok int64
	Set            bool
}

// Rates are the prices of a model's buckets.
type Rates struct {
	Input       Rate // required
	CachedInput Rate // cache read; unset: the model has no prompt caching
	CacheWrite  Rate // 5-minute cache write; unset: cache writes bill as input (OpenAI before GPT-5.6)
	// CacheWrite1h is the 1-hour cache write (Anthropic); unset: a 1-hour
	// write makes the cost unknown.
	CacheWrite1h Rate
	Output       Rate // unset for embedding models
}

// byName returns the rate the price file names name (input,
// cached_input, cache_write, cache_write_1h, output); unset when unknown.
func (r Rates) byName(name string) Rate {
	switch name {
	case "input":
		return r.Input
	case "cached_input":
		return r.CachedInput
	case "cache_write":
		return r.CacheWrite
	case "cache_write_1h":
		return r.CacheWrite1h
	case "output":
		return r.Output
	}
	return Rate{}
}

// LongContext holds the rates that replace a model's own when a request's
// input (input, cached input and cache writes together) exceeds
// AboveInputTokens, as Anthropic bills Claude Sonnet 4 and 4.5 beyond 200K
// input tokens.
type LongContext struct {
	AboveInputTokens int64
	Rates
}

// Price is a model's entry in the table.
type Price struct {
	Rates
	LongContext *LongContext // nil when the model has no long-context rates
}

// Table is a pricing table. It is immutable and safe for concurrent use.
type Table struct {
	version string
	models  map[edge.Provider]map[string]Price
}

// Version names the table: the embedded table's date, followed by
// "+" and the override's version (or "+override" when the override has
// none) when an override was merged.
func (t *Table) Version() string { return t.version }

var embeddedTable = sync.OnceValues(func() (*Table, error) {
	f, err := decode(bytes.NewReader(embedded), false, nil)
	if err != nil {
		return nil, fmt.Errorf("embedded prices.json: %w", err)
	}
	t := &Table{version: f.version, models: f.models}
	return t, nil
})

// Load returns the embedded table, with override merged over it when
// override is not nil. An override entry replaces the embedded entry of the
// same provider and model as a whole; a null entry removes it. Malformed or
// negative prices are errors that name the model and the field, and so is
// an override entry without a rate one of formats requires of its
// provider's models (Format.RequiredRates).
func Load(override io.Reader, formats ...RateRequirer) (*Table, error) {
	base, err := embeddedTable()
	if err != nil {
		return nil, err
	}
	if override == nil {
		return base, nil
	}
	f, err := decode(override, true, formats)
	if err != nil {
		return nil, fmt.Errorf("pricing override: %w", err)
	}
	t := &Table{version: base.version + "+override", models: make(map[edge.Provider]map[string]Price)}
	if f.version != "" {
		t.version = base.version + "+" + f.version
	}
	for p, m := range base.models {
		t.models[p] = maps.Clone(m)
	}
	for p, m := range f.models {
		if t.models[p] == nil {
			t.models[p] = make(map[string]Price)
		}
		maps.Copy(t.models[p], m)
	}
	for p, names := range f.removed {
		for _, n := range names {
			delete(t.models[p], n)
		}
	}
	return t, nil
}

// LoadFile is Load with the override read from the file at path.
func LoadFile(path string, formats ...RateRequirer) (*Table, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pricing override: %w", err)
	}
	t, err := Load(bytes.NewReader(b), formats...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Lookup finds the price of model: the entry of that exact name, else the
// entry named by model without a snapshot suffix ("-2024-08-06",
// "-20250929" or "-latest"), so a dated snapshot takes its family's price
// and nothing else does ("gpt-4o-mini-2024-07-18" is gpt-4o-mini, never
// gpt-4o; "gpt-4o-audio-preview" is not priced). It returns the name of the
// entry used.
func (t *Table) Lookup(p edge.Provider, model string) (string, Price, bool) {
	m := t.models[p]
	if pr, ok := m[model]; ok {
		return model, pr, true
	}
	if base, ok := stripSnapshot(model); ok {
		if pr, ok := m[base]; ok {
			return base, pr, true
		}
	}
	return "", Price{}, false
}

// stripSnapshot removes a snapshot suffix: -YYYY-MM-DD (OpenAI),
// -YYYYMMDD (Anthropic) or -latest.
func stripSnapshot(model string) (string, bool) {
	if base, ok := cutSuffix(model, "-latest"); ok {
		return base, true
	}
	n := len(model)
	if n > 11 && model[n-11] == '-' && model[n-6] == '-' && model[n-3] == '-' &&
		isDate(model[n-10:n-6], model[n-5:n-3], model[n-2:]) {
		return model[:n-11], true
	}
	if n > 9 && model[n-9] == '-' && isDate(model[n-8:n-4], model[n-4:n-2], model[n-2:]) {
		return model[:n-9], true
	}
	return "", false
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return "", false
}

func isDate(y, m, d string) bool {
	for _, s := range []string{y, m, d} {
		for i := range len(s) {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
	}
	mm := int(m[0]-'0')*10 + int(m[1]-'0')
	dd := int(d[0]-'0')*10 + int(d[1]-'0')
	return mm >= 1 && mm <= 12 && dd >= 1 && dd <= 31
}

// RateRequirer says which rates every model of a provider must have
// (provider.Format).
type RateRequirer interface {
	Provider() edge.Provider
	RequiredRates() []string
}

// Biller is what pricing needs to know of a provider's format (see
// provider.Format): how an endpoint bills, and which service tier the list
// prices are for.
type Biller interface {
	Provider() edge.Provider
	Billing(ep provider.Endpoint) provider.Billing
	StandardTier(tier string) bool
}

// Cost prices usage of a model at an endpoint of b's provider. The cost is
// unknown when the endpoint bills in a way the table does not cover, the
// model is not in the table, or a count the price needs is unknown. It
// cannot tell 1-hour cache writes apart, since edge.Usage does not say
// which were 1-hour writes: price a fresh answer with CostResult.
func (t *Table) Cost(b Biller, ep provider.Endpoint, model string, u edge.Usage) (nanoUSD int64, known bool) {
	return t.cost(b, ep, model, u, edge.Count{}, false)
}

// CostResult prices an answer as package usage read it, with what
// edge.Usage cannot hold: the 1-hour share of cache writes, the service tier
// and charges tokens do not cover. The cost is unknown when the answer was
// served on a tier other than the standard one, or at Anthropic's fast
// speed, since the table holds standard list prices, or when r.Unpriced is
// set. r.Model must name the served model; a caller whose answer named none
// sets the requested model.
func (t *Table) CostResult(b Biller, ep provider.Endpoint, r usage.Result) (nanoUSD int64, known bool) {
	if b.Billing(ep) == provider.Free {
		return 0, true
	}
	if r.Unpriced != "" || !b.StandardTier(r.ServiceTier) || (r.Speed != "" && r.Speed != "standard") {
		return 0, false
	}
	return t.cost(b, ep, r.Model, r.Usage, r.CacheWrite1h, true)
}

func (t *Table) cost(b Biller, ep provider.Endpoint, model string, u edge.Usage, write1h edge.Count, split1h bool) (int64, bool) {
	switch b.Billing(ep) {
	case provider.Free:
		return 0, true
	case provider.Unbilled:
		return 0, false
	}
	_, price, ok := t.Lookup(b.Provider(), model)
	if !ok {
		return 0, false
	}
	rates := price.Rates
	if lc := price.LongContext; lc != nil {
		in, ok := totalInput(rates, u)
		if !ok {
			return 0, false
		}
		if in > lc.AboveInputTokens {
			rates = lc.Rates
		}
	}
	var a sum
	// Input: always priced, so always needed.
	if !u.Input.Known {
		return 0, false
	}
	a.add(u.Input.N, rates.Input.NanoUSDPerMTok)
	if !a.bucket(u.CachedInput, rates.CachedInput) || !a.bucket(u.Output, rates.Output) {
		return 0, false
	}
	switch {
	case !rates.CacheWrite.Set:
		// No cache-write rate: writes bill as input. When the provider
		// reported none separately they are already inside Input.
		if u.CacheWrite.Known {
			a.add(u.CacheWrite.N, rates.Input.NanoUSDPerMTok)
		}
	case !u.CacheWrite.Known:
		return 0, false
	case !split1h || u.CacheWrite.N == 0:
		a.add(u.CacheWrite.N, rates.CacheWrite.NanoUSDPerMTok)
	default:
		if !write1h.Known || write1h.N > u.CacheWrite.N {
			return 0, false
		}
		if write1h.N > 0 {
			if !rates.CacheWrite1h.Set {
				return 0, false
			}
			a.add(write1h.N, rates.CacheWrite1h.NanoUSDPerMTok)
		}
		a.add(u.CacheWrite.N-write1h.N, rates.CacheWrite.NanoUSDPerMTok)
	}
	return a.nanoUSD()
}

// totalInput is the request's whole input, as long-context pricing counts
// it: input, cache reads and cache writes. A bucket the model does not
// bill separately and the provider did not report is nothing (or already
// inside Input).
func totalInput(r Rates, u edge.Usage) (int64, bool) {
	if !u.Input.Known {
		return 0, false
	}
	total := u.Input.N
	for _, b := range []struct {
		c   edge.Count
		set bool
	}{{u.CachedInput, r.CachedInput.Set}, {u.CacheWrite, r.CacheWrite.Set}} {
		switch {
		case b.c.Known:
			if total > 1<<63-1-b.c.N {
				return 0, false
			}
			total += b.c.N
		case b.set:
			return 0, false
		}
	}
	return total, true
}

// sum accumulates tokens × rate exactly in 128 bits.
type sum struct {
	hi, lo   uint64
	overflow bool
}

func (s *sum) add(n, rate int64) {
	h, l := bits.Mul64(uint64(n), uint64(rate))
	var c uint64
	s.lo, c = bits.Add64(s.lo, l, 0)
	s.hi, c = bits.Add64(s.hi, h, c)
	if c != 0 {
		s.overflow = true
	}
}

// bucket adds a bucket priced at r. A priced bucket must be known; an
// unpriced one must be unknown or zero (tokens the model cannot bill for
// mean the table is wrong for this answer).
func (s *sum) bucket(c edge.Count, r Rate) bool {
	if r.Set {
		if !c.Known {
			return false
		}
		s.add(c.N, r.NanoUSDPerMTok)
		return true
	}
	return !c.Known || c.N == 0
}

// nanoUSD divides the sum (nano-USD per million tokens × tokens) by one
// million, rounding halves up: the one rounding of a cost.
func (s *sum) nanoUSD() (int64, bool) {
	const million = 1_000_000
	lo, c := bits.Add64(s.lo, million/2, 0)
	hi, c := bits.Add64(s.hi, 0, c)
	if s.overflow || c != 0 || hi >= million {
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, million)
	if q > 1<<63-1 {
		return 0, false
	}
	return int64(q), true
}

// The file format.
type file struct {
	Version   string                                `json:"version"`
	Note      string                                `json:"note"`
	Providers map[string]map[string]json.RawMessage `json:"providers"`
}

type fileRates struct {
	Input        json.RawMessage `json:"input"`
	CachedInput  json.RawMessage `json:"cached_input"`
	CacheWrite   json.RawMessage `json:"cache_write"`
	CacheWrite1h json.RawMessage `json:"cache_write_1h"`
	Output       json.RawMessage `json:"output"`
}

type filePrice struct {
	fileRates
	LongContext *struct {
		AboveInputTokens int64 `json:"above_input_tokens"`
		fileRates
	} `json:"long_context"`
}

type decoded struct {
	version string
	models  map[edge.Provider]map[string]Price
	removed map[edge.Provider][]string
}

// ErrInvalid marks a malformed table.
var ErrInvalid = errors.New("invalid pricing table")

func decode(r io.Reader, override bool, formats []RateRequirer) (decoded, error) {
	var f file
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return decoded{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if dec.More() {
		return decoded{}, fmt.Errorf("%w: data after the table", ErrInvalid)
	}
	if f.Version != "" || !override {
		if _, err := time.Parse(time.DateOnly, f.Version); err != nil {
			return decoded{}, fmt.Errorf("%w: version %q is not a date (YYYY-MM-DD)", ErrInvalid, f.Version)
		}
	}
	d := decoded{version: f.Version, models: make(map[edge.Provider]map[string]Price), removed: make(map[edge.Provider][]string)}
	for pname, models := range f.Providers {
		p := edge.Provider(pname)
		if !p.Valid() {
			return decoded{}, fmt.Errorf("%w: unknown provider %q", ErrInvalid, pname)
		}
		d.models[p] = make(map[string]Price, len(models))
		for name, raw := range models {
			if name == "" {
				return decoded{}, fmt.Errorf("%w: %s: empty model name", ErrInvalid, p)
			}
			if string(raw) == "null" {
				if !override {
					return decoded{}, fmt.Errorf("%w: %s model %q: null entry", ErrInvalid, p, name)
				}
				d.removed[p] = append(d.removed[p], name)
				continue
			}
			pr, err := parsePrice(raw, required(formats, p))
			if err != nil {
				return decoded{}, fmt.Errorf("%w: %s model %q: %w", ErrInvalid, p, name, err)
			}
			d.models[p][name] = pr
		}
	}
	return d, nil
}

// required returns the rates formats require of p's models.
func required(formats []RateRequirer, p edge.Provider) []string {
	for _, f := range formats {
		if f.Provider() == p {
			return f.RequiredRates()
		}
	}
	return nil
}

func parsePrice(raw json.RawMessage, need []string) (Price, error) {
	var fp filePrice
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fp); err != nil {
		return Price{}, err
	}
	rates, err := parseRates(fp.fileRates)
	if err != nil {
		return Price{}, err
	}
	if !rates.Input.Set {
		return Price{}, errors.New("input: missing")
	}
	for _, name := range need {
		if !rates.byName(name).Set {
			return Price{}, fmt.Errorf("%s: missing", name)
		}
	}
	pr := Price{Rates: rates}
	if lc := fp.LongContext; lc != nil {
		lr, err := parseRates(lc.fileRates)
		if err != nil {
			return Price{}, fmt.Errorf("long_context: %w", err)
		}
		if lc.AboveInputTokens <= 0 {
			return Price{}, errors.New("long_context: above_input_tokens: must be positive")
		}
		// The same buckets as the base rates, so crossing the threshold
		// never changes which buckets are billed.
		for _, f := range []struct {
			name       string
			base, long Rate
		}{
			{"input", rates.Input, lr.Input},
			{"cached_input", rates.CachedInput, lr.CachedInput},
			{"cache_write", rates.CacheWrite, lr.CacheWrite},
			{"cache_write_1h", rates.CacheWrite1h, lr.CacheWrite1h},
			{"output", rates.Output, lr.Output},
		} {
			if f.base.Set != f.long.Set {
				return Price{}, fmt.Errorf("long_context: %s: set in one of the base and long-context rates only", f.name)
			}
		}
		pr.LongContext = &LongContext{AboveInputTokens: lc.AboveInputTokens, Rates: lr}
	}
	return pr, nil
}

func parseRates(f fileRates) (Rates, error) {
	var r Rates
	for _, x := range []struct {
		name string
		raw  json.RawMessage
		dst  *Rate
	}{
		{"input", f.Input, &r.Input},
		{"cached_input", f.CachedInput, &r.CachedInput},
		{"cache_write", f.CacheWrite, &r.CacheWrite},
		{"cache_write_1h", f.CacheWrite1h, &r.CacheWrite1h},
		{"output", f.Output, &r.Output},
	} {
		if len(x.raw) == 0 || string(x.raw) == "null" {
			continue
		}
		var s string
		if err := json.Unmarshal(x.raw, &s); err != nil {
			return Rates{}, fmt.Errorf("%s: price %s is not a decimal string", x.name, x.raw)
		}
		n, err := ParseUSD(s)
		if err != nil {
			return Rates{}, fmt.Errorf("%s: %w", x.name, err)
		}
		*x.dst = Rate{NanoUSDPerMTok: n, Set: true}
	}
	return r, nil
}

// maxUSD bounds a price (USD per million tokens), far above any real one,
// so that a sum of prices times token counts has room in 128 bits.
const maxUSD = 1_000_000

// ParseUSD parses a non-negative decimal amount of USD ("2.50", "0.075",
// "10") into nano-USD exactly. It refuses signs, exponents, more than nine
// decimals (which no integer of nano-USD can hold) and amounts over one
// million.
func ParseUSD(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty price")
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("negative price %q", s)
	}
	intPart, frac, hasDot := s, "", false
	for i := range len(s) {
		if s[i] == '.' {
			intPart, frac, hasDot = s[:i], s[i+1:], true
			break
		}
	}
	if intPart == "" || (hasDot && frac == "") || !digits(intPart) || !digits(frac) {
		return 0, fmt.Errorf("malformed price %q", s)
	}
	if len(frac) > 9 {
		return 0, fmt.Errorf("price %q has more than 9 decimals", s)
	}
	if len(intPart) > 7 {
		return 0, fmt.Errorf("price %q over %d", s, maxUSD)
	}
	var n int64
	for i := range len(intPart) {
		n = n*10 + int64(intPart[i]-'0')
	}
	n *= 1_000_000_000
	var f int64
	for i := range 9 {
		f *= 10
		if i < len(frac) {
			f += int64(frac[i] - '0')
		}
	}
	n += f
	if n > maxUSD*1_000_000_000 {
		return 0, fmt.Errorf("price %q over %d", s, maxUSD)
	}
	return n, nil
}

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
