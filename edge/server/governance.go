package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/budget"
)

// registerGovernance adds the limit and budget routes (DESIGN §10) to the
// admin API, the same as `codex-edge limits` and `budgets`:
//
//	GET  /orgs/:org/limits   {"limits": [{"org_id","key_id","rpm","tpm"}, …]}
//	POST /orgs/:org/limits   {"key_id"?, "rpm"?, "tpm"?}: a field left out stays; 0 removes
//	GET  /orgs/:org/budgets  {"budgets": [{"org_id","key_id","period","cap_usd","spent_usd","reserved_usd","period_end"}, …]}
//	POST /orgs/:org/budgets  {"key_id"?, "usd": "12.50", "period": "day"|"month"}: "0" removes
//
// :org is an org id or name. A change applies on this instance at once and
// on the others within CODEX_CHANGE_POLL.
func (s *Server) registerGovernance(g *echo.Group) {
	g.GET("/orgs/:org/limits", s.listLimits)
	g.POST("/orgs/:org/limits", s.setLimit)
	g.GET("/orgs/:org/budgets", s.listBudgets)
	g.POST("/orgs/:org/budgets", s.setBudget)
}

var (
	errLimitBody  = edge.StatusError(http.StatusBadRequest, `send {"key_id": "…" (optional), "rpm": N, "tpm": N}: at least one of rpm and tpm, 0 removes a limit`)
	errBudgetBody = edge.StatusError(http.StatusBadRequest, `send {"key_id": "…" (optional), "usd": "12.50", "period": "day" or "month"}: "usd" "0" removes the budget`)
)

// decodeBody reads a small JSON body strictly into v.
func decodeBody(c echo.Context, v any) bool {
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, 4096))
	dec.DisallowUnknownFields()
	return dec.Decode(v) == nil
}

func (s *Server) listLimits(c echo.Context) error {
	o, err := s.findOrg(c.Request().Context(), c.Param("org"))
	if err != nil {
		return err
	}
	ls, err := s.store.Limits(c.Request().Context(), o.ID)
	if err != nil {
		return storeError(fmt.Errorf("admin: list limits: %w", err))
	}
	out := make([]edge.LimitJSON, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.JSON())
	}
	return c.JSON(http.StatusOK, map[string]any{"limits": out})
}

func (s *Server) setLimit(c echo.Context) error {
	o, err := s.findOrg(c.Request().Context(), c.Param("org"))
	if err != nil {
		return err
	}
	var req struct {
		KeyID string `json:"key_id"`
		RPM   *int64 `json:"rpm"`
		TPM   *int64 `json:"tpm"`
	}
	if !decodeBody(c, &req) || (req.RPM == nil && req.TPM == nil) {
		return errLimitBody
	}
	ctx := c.Request().Context()
	ls, err := s.store.Limits(ctx, o.ID)
	if err != nil {
		return storeError(fmt.Errorf("admin: list limits: %w", err))
	}
	l := edge.LimitFor(ls, o.ID, req.KeyID)
	if req.RPM != nil {
		l.RPM = *req.RPM
	}
	if req.TPM != nil {
		l.TPM = *req.TPM
	}
	l.UpdatedAt = time.Now().UTC()
	if err := s.store.SetLimit(ctx, l); err != nil {
		return storeError(fmt.Errorf("admin: set limit: %w", err))
	}
	s.governanceChanged(o.ID)
	if err := audit.Admin(ctx, s.store, audit.API(c.Request()), audit.LimitSet(l)); err != nil {
		return storeUnavailable(fmt.Errorf("admin: the limit was set, but %w", err))
	}
	s.log.Info("limit set", "org", o.ID, "key", l.KeyID, "rpm", l.RPM, "tpm", l.TPM, "by", "admin-api")
	return c.JSON(http.StatusOK, l.JSON())
}

func (s *Server) listBudgets(c echo.Context) error {
	o, err := s.findOrg(c.Request().Context(), c.Param("org"))
	if err != nil {
		return err
	}
	uses, err := s.budgetUses(c, o.ID)
	if err != nil {
		return err
	}
	out := make([]edge.BudgetJSON, 0, len(uses))
	for _, u := range uses {
		out = append(out, u.JSON())
	}
	return c.JSON(http.StatusOK, map[string]any{"budgets": out})
}

func (s *Server) setBudget(c echo.Context) error {
	o, err := s.findOrg(c.Request().Context(), c.Param("org"))
	if err != nil {
		return err
	}
	var req struct {
		KeyID  string      `json:"key_id"`
		USD    json.Number `json:"usd"`
		Period edge.Period `json:"period"`
	}
	if !decodeBody(c, &req) || req.USD == "" || !req.Period.Valid() {
		return errBudgetBody
	}
	capNano, err := edge.ParseUSD(req.USD.String())
	if err != nil {
		return err
	}
	b := edge.Budget{OrgID: o.ID, KeyID: req.KeyID, Period: req.Period, CapNanoUSD: capNano, UpdatedAt: time.Now().UTC()}
	ctx := c.Request().Context()
	if err := s.store.SetBudget(ctx, b); err != nil {
		return storeError(fmt.Errorf("admin: set budget: %w", err))
	}
	s.governanceChanged(o.ID)
	if err := audit.Admin(ctx, s.store, audit.API(c.Request()), audit.BudgetSet(b)); err != nil {
		return storeUnavailable(fmt.Errorf("admin: the budget was set, but %w", err))
	}
	s.log.Info("budget set", "org", o.ID, "key", b.KeyID, "period", b.Period, "cap_usd", edge.FormatUSD(capNano), "by", "admin-api")
	uses, err := s.budgetUses(c, o.ID)
	if err != nil {
		return err
	}
	for _, u := range uses {
		if u.KeyID == b.KeyID && u.Period == b.Period {
			return c.JSON(http.StatusOK, u.JSON())
		}
	}
	// Removed.
	return c.JSON(http.StatusOK, edge.BudgetUse{Budget: b, Start: b.Period.Start(time.Now())}.JSON())
}

// budgetUses reads the org's budgets and their use in the current period,
// live: settled spend not written to the store yet, and the reservations
// of requests in progress (on every instance, with Redis).
func (s *Server) budgetUses(c echo.Context, orgID string) ([]edge.BudgetUse, error) {
	ctx := c.Request().Context()
	bs, err := s.store.Budgets(ctx, orgID)
	if err != nil {
		return nil, storeError(fmt.Errorf("admin: list budgets: %w", err))
	}
	now := time.Now()
	out := make([]edge.BudgetUse, 0, len(bs))
	for _, b := range bs {
		start := b.Period.Start(now)
		spent, reserved, err := s.ledger.Use(ctx, budget.Bucket{OrgID: orgID, KeyID: b.KeyID, Period: b.Period, Start: start, Cap: b.CapNanoUSD})
		if err != nil {
			return nil, storeError(fmt.Errorf("admin: read spend: %w", err))
		}
		out = append(out, edge.BudgetUse{Budget: b, Start: start, SpentNanoUSD: spent, ReservedNanoUSD: reserved})
	}
	return out, nil
}

// governanceChanged applies a change of an org's limits or budgets made
// through this instance at once.
func (s *Server) governanceChanged(orgID string) {
	s.limits.Forget(orgID)
	s.budgets.Forget(orgID)
}
