package dashboard

import (
	"mime"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/shared/wire"
)

// CSRFHeader carries the session's CSRF token on the JSON API's
// state-changing requests (the pages embed it as data-csrf on <body>).
const CSRFHeader = "X-CSRF-Token"

func (s *Server) apiHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// requireAPIRequest keeps forms out of the API: a state-changing request
// must carry the CSRF header (which a cross-site form cannot set) and, with
// a body, JSON.
func (s *Server) requireAPIRequest(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if isSafe(r.Method) {
			return next(c)
		}
		if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				return &controlplane.Error{Kind: controlplane.KindUnsupportedMedia, Message: "send application/json"}
			}
		}
		if !csrfValid(s.csrfKey, sess(c).ID, r.Header.Get(CSRFHeader)) {
			return &controlplane.Error{Kind: controlplane.KindForbidden, Message: "missing or invalid " + CSRFHeader}
		}
		return next(c)
	}
}

func (s *Server) apiErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil || c.Response().Committed {
			return err
		}
		e := s.shownError(c, err, func(ref string) string { return "internal error " + ref })
		return c.JSON(e.Status(), e.Body())
	}
}

type apiTotals struct {
	Requests          int64   `json:"requests"`
	InputTokens       int64   `json:"input_tokens"`
	CachedInputTokens int64   `json:"cached_input_tokens"`
	CacheWriteTokens  int64   `json:"cache_write_tokens"`
	OutputTokens      int64   `json:"output_tokens"`
	ReasoningTokens   int64   `json:"reasoning_tokens"`
	CostNanoUSD       int64   `json:"cost_nano_usd"`
	CostUnknown       int64   `json:"cost_unknown"`
	SavedNanoUSD      int64   `json:"saved_nano_usd"`
	Limited           int64   `json:"limited"`        // refused by a rate limit
	BudgetRefused     int64   `json:"budget_refused"` // refused by a budget
	CacheHitRate      float64 `json:"cache_hit_rate"` // -1: no cacheable requests
	LatencyP50MS      float64 `json:"latency_p50_ms"` // -1: no requests
	LatencyP95MS      float64 `json:"latency_p95_ms"`
}

func totalsJSON(s Summary) apiTotals {
	return apiTotals{Requests: s.Requests, InputTokens: s.Input.Sum, CachedInputTokens: s.CachedInput.Sum, CacheWriteTokens: s.CacheWrite.Sum,
		OutputTokens: s.Output.Sum, ReasoningTokens: s.Reasoning.Sum, CostNanoUSD: s.CostNanoUSD, CostUnknown: s.CostUnknown,
		SavedNanoUSD: s.SavedNanoUSD, Limited: s.Limited, BudgetRefused: s.BudgetRefused,
		CacheHitRate: s.HitRate(), LatencyP50MS: s.P50(), LatencyP95MS: s.P95()}
}

// apiBudget is a budget as its edge last reported it.
type apiBudget struct {
	Workspace    string    `json:"workspace"`
	KeyRef       string    `json:"key_ref"`
	Period       string    `json:"period"`
	CapNanoUSD   int64     `json:"cap_nano_usd"`
	SpentNanoUSD int64     `json:"spent_nano_usd"`
	EdgeID       string    `json:"edge_id"`
	AsOf         time.Time `json:"as_of"`
}

func (s *Server) apiUsage(c echo.Context) error {
	u, err := Overview(c.Request().Context(), s.store, actor(c).OrgID, rangeByKey(c.QueryParam("range")), s.now())
	if err != nil {
		return err
	}
	type point struct {
		Time time.Time `json:"time"`
		apiTotals
	}
	type bdRow struct {
		Name string `json:"name"`
		apiTotals
	}
	out := struct {
		Range      string             `json:"range"`
		From       time.Time          `json:"from"`
		To         time.Time          `json:"to"`
		Step       string             `json:"step"`
		Totals     apiTotals          `json:"totals"`
		Series     []point            `json:"series"`
		Breakdowns map[string][]bdRow `json:"breakdowns"`
		Budgets    []apiBudget        `json:"budgets"`
		// Memories and Audit are as version 3 batches carry them,
		// summed over the hours the range touches.
		Memories []wire.MemoryUse  `json:"memories"`
		Audit    []wire.AuditCount `json:"audit"`
	}{Range: u.Range.Key, From: u.From, To: u.To, Step: u.Range.Step.String(), Totals: totalsJSON(u.Total), Breakdowns: map[string][]bdRow{},
		Budgets: []apiBudget{}, Memories: []wire.MemoryUse{}, Audit: []wire.AuditCount{}}
	for _, w := range u.Memories {
		out.Memories = append(out.Memories, w.Uses...)
	}
	for _, w := range u.Audit {
		for _, a := range []wire.AuditCount{{Workspace: w.Workspace, Level: "none", Records: w.None},
			{Workspace: w.Workspace, Level: "hash", Records: w.Hash}, {Workspace: w.Workspace, Level: "full", Records: w.Full}} {
			if a.Records > 0 {
				out.Audit = append(out.Audit, a)
			}
		}
	}
	for _, b := range u.Budgets {
		out.Budgets = append(out.Budgets, apiBudget{Workspace: b.Workspace, KeyRef: b.KeyRef, Period: b.Period,
			CapNanoUSD: b.CapNanoUSD, SpentNanoUSD: b.SpentNanoUSD, EdgeID: b.EdgeID, AsOf: b.AsOf})
	}
	for i, t := range u.Buckets {
		out.Series = append(out.Series, point{Time: t, apiTotals: totalsJSON(u.Series[i])})
	}
	for _, b := range u.Breakdowns {
		rows := []bdRow{}
		for _, r := range b.Rows {
			rows = append(rows, bdRow{Name: r.Name, apiTotals: totalsJSON(r.Summary)})
		}
		out.Breakdowns[string(b.Dim)] = rows
	}
	return c.JSON(http.StatusOK, out)
}

type apiEdge struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Version   string     `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	LastSeen  *time.Time `json:"last_seen"`
	Sharing   bool       `json:"sharing"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (s *Server) apiEdges(c echo.Context) error {
	edges, err := s.store.Edges(c.Request().Context(), actor(c).OrgID)
	if err != nil {
		return err
	}
	out := []apiEdge{}
	for _, e := range edges {
		out = append(out, apiEdge{ID: e.ID, Name: e.Name, Version: e.Version, CreatedAt: e.CreatedAt, LastSeen: optTime(e.LastSeen), Sharing: e.Sharing, RevokedAt: optTime(e.RevokedAt)})
	}
	return c.JSON(http.StatusOK, map[string]any{"edges": out})
}

func (s *Server) apiRevokeEdge(c echo.Context) error {
	u := sess(c).User
	if err := s.enroll.Revoke(c.Request().Context(), u.OrgID, c.Param("id")); err != nil {
		return err
	}
	s.log.Info("dashboard edge revoked", "org_id", u.OrgID, "by", u.ID, "edge_id", c.Param("id"))
	e, err := s.store.Edge(c.Request().Context(), u.OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiEdge{ID: e.ID, Name: e.Name, Version: e.Version, CreatedAt: e.CreatedAt, LastSeen: optTime(e.LastSeen), Sharing: e.Sharing, RevokedAt: optTime(e.RevokedAt)})
}

func (s *Server) apiMembers(c echo.Context) error {
	users, err := s.store.Users(c.Request().Context(), actor(c).OrgID)
	if err != nil {
		return err
	}
	type member struct {
		ID        string    `json:"id"`
		Email     string    `json:"email"`
		Role      string    `json:"role"`
		CreatedAt time.Time `json:"created_at"`
	}
	out := []member{}
	for _, u := range users {
		out = append(out, member{ID: u.ID, Email: u.Email, Role: string(u.Role), CreatedAt: u.CreatedAt})
	}
	return c.JSON(http.StatusOK, map[string]any{"members": out})
}
