package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/fingerprint"
)

// registerAudit adds the audit log's admin routes (DESIGN §10), {org}
// being an org id or name:
//
//	GET /orgs/{org}/audit/level    the org's level and its keys'
//	PUT /orgs/{org}/audit/level    {"level": "none|hash|full", "key_id": ""}
//	GET /orgs/{org}/audit/events   ?since=RFC3339&after_seq=N&limit=N: {"events": [...]}, as audit list --json
//	GET /orgs/{org}/audit/verify   as audit verify --json
//	GET /audit/events/{id}         the event and, at level full, its content verbatim, as audit show --json
func (s *Server) registerAudit(g *echo.Group) {
	g.GET("/orgs/:org/audit/level", s.auditLevels)
	g.PUT("/orgs/:org/audit/level", s.setAuditLevel)
	g.GET("/orgs/:org/audit/events", s.auditEvents)
	g.GET("/orgs/:org/audit/verify", s.auditVerify)
	g.GET("/audit/events/:id", s.auditEvent)
}

// org finds the org an admin route names by id or name.
func (s *Server) org(c echo.Context) (edge.Org, error) {
	return s.findOrg(c.Request().Context(), c.Param("org"))
}

func (s *Server) auditLevels(c echo.Context) error {
	o, err := s.org(c)
	if err != nil {
		return err
	}
	levels, err := s.store.AuditLevels(c.Request().Context(), o.ID)
	if err != nil {
		return storeUnavailable(err)
	}
	out := map[string]any{"org_id": o.ID, "level": edge.AuditNone, "keys": map[string]edge.AuditLevel{}}
	for _, l := range levels {
		if l.KeyID == "" {
			out["level"] = l.Level
		} else {
			out["keys"].(map[string]edge.AuditLevel)[l.KeyID] = l.Level
		}
	}
	return c.JSON(http.StatusOK, out)
}

var errLevelBody = edge.StatusError(http.StatusBadRequest, `send {"level": "none"|"hash"|"full"} and, for one key, "key_id"`)

func (s *Server) setAuditLevel(c echo.Context) error {
	o, err := s.org(c)
	if err != nil {
		return err
	}
	var req struct {
		Level string `json:"level"`
		KeyID string `json:"key_id"`
	}
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return errLevelBody
	}
	level, err := edge.ParseAuditLevel(req.Level)
	if err != nil {
		return errLevelBody
	}
	ctx := c.Request().Context()
	err = s.store.SetAuditLevel(ctx, edge.AuditSetting{OrgID: o.ID, KeyID: req.KeyID, Level: level, UpdatedAt: time.Now().UTC()})
	if errors.Is(err, edge.ErrNotFound) {
		return err
	}
	if err != nil {
		return storeUnavailable(err)
	}
	if err := audit.Admin(ctx, s.store, audit.API(c.Request()), audit.Change{OrgID: o.ID, Action: "audit.level", Target: req.KeyID,
		Details: map[string]string{"level": string(level)}}); err != nil {
		return storeUnavailable(fmt.Errorf("the level was set, but %w", err))
	}
	// This instance applies it at once; the others within CODEX_CHANGE_POLL.
	s.dir.ForgetOrg(o.ID)
	return c.JSON(http.StatusOK, map[string]any{"org_id": o.ID, "key_id": req.KeyID, "level": level})
}

// maxListed bounds one page of the events route.
const maxListed = 1000

var errEventsQuery = edge.StatusError(http.StatusBadRequest, "since must be an RFC 3339 time, after_seq an integer and limit an integer from 1 to 1000")

func (s *Server) auditEvents(c echo.Context) error {
	o, err := s.org(c)
	if err != nil {
		return err
	}
	q := edge.AuditQuery{Limit: maxListed}
	if v := c.QueryParam("since"); v != "" {
		if q.Since, err = time.Parse(time.RFC3339, v); err != nil {
			return errEventsQuery
		}
	}
	if v := c.QueryParam("after_seq"); v != "" {
		if q.AfterSeq, err = strconv.ParseInt(v, 10, 64); err != nil {
			return errEventsQuery
		}
	}
	if v := c.QueryParam("limit"); v != "" {
		if q.Limit, err = strconv.Atoi(v); err != nil || q.Limit < 1 || q.Limit > maxListed {
			return errEventsQuery
		}
	}
	evs, err := s.store.AuditEvents(c.Request().Context(), o.ID, q)
	if err != nil {
		return storeUnavailable(err)
	}
	items := make([]audit.Item, 0, len(evs))
	for _, ev := range evs {
		it, err := audit.ItemOf(ev)
		if err != nil {
			return storeUnavailable(fmt.Errorf("audit event %s: %w", ev.ID, err))
		}
		items = append(items, it)
	}
	return c.JSON(http.StatusOK, map[string]any{"events": items})
}

func (s *Server) auditEvent(c echo.Context) error {
	ctx := c.Request().Context()
	ev, err := s.store.AuditEventByID(ctx, c.Param("id"))
	if errors.Is(err, edge.ErrNotFound) {
		return err
	}
	if err != nil {
		return storeUnavailable(err)
	}
	it, err := audit.ItemOf(ev)
	if err != nil {
		return storeUnavailable(err)
	}
	var content audit.Content
	if len(ev.Content) > 0 {
		if content, err = audit.OpenContent(ctx, s.keys, ev); err != nil {
			e := edge.StatusError(http.StatusConflict, "the event's content does not open: its data key is gone or it was altered")
			e.Err = err
			return e
		}
	}
	return c.JSON(http.StatusOK, audit.ShownOf(it, content))
}

func (s *Server) auditVerify(c echo.Context) error {
	o, err := s.org(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	// The org's fingerprint secret as this instance holds it.
	secrets := func(ctx context.Context, orgID string) (*fingerprint.Fingerprinter, error) {
		org, err := s.dir.Org(ctx, orgID)
		if err != nil {
			return nil, err
		}
		return org.Fingerprinter, nil
	}
	r, err := audit.Verify(ctx, s.store, o.ID, s.keys, secrets)
	if err != nil {
		return storeUnavailable(err)
	}
	return c.JSON(http.StatusOK, r)
}
