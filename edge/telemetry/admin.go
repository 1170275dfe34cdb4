package telemetry

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
)

// RegisterAdmin adds the telemetry routes to the admin listener's group
// (mounted at /admin/v1/telemetry):
//
//	GET  ""          status, as `codex-edge telemetry status --json`
//	POST "/sharing"  {"on": true|false}: switch sharing, persisted
//	GET  "/ledger"   {"entries": [...]}: every batch (and enrollment exchange) that left; ?after_seq=N
//
// Errors are returned, not written: the admin listener answers them in its
// one shape. These are the only ways in besides the CLI: the edge only ever
// publishes to the control plane and subscribes to nothing but its own
// acknowledgements, so nothing there can switch sharing on.
func (s *Service) RegisterAdmin(g *echo.Group) {
	g.GET("", func(c echo.Context) error {
		s.reload(c.Request().Context()) // a change the CLI just made
		return c.JSON(http.StatusOK, s.Status())
	})
	g.POST("/sharing", func(c echo.Context) error {
		// application/json only: a web page cannot send it cross-origin
		// without a CORS preflight, which this listener never grants, so
		// a browser on the admin host cannot be made to switch sharing.
		if mt, _, err := mime.ParseMediaType(c.Request().Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return edge.ErrAdminJSONOnly
		}
		var req struct {
			On *bool `json:"on"`
		}
		dec := json.NewDecoder(io.LimitReader(c.Request().Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.On == nil {
			return errSharingBody
		}
		s.reload(c.Request().Context()) // an enrollment the CLI just made
		if *req.On && !s.Status().Enrolled && s.opts.Enroll != nil {
			// Deferred from start-up: sharing was off.
			if err := s.opts.Enroll(c.Request().Context()); err != nil {
				e := edge.StatusError(http.StatusBadGateway, "enrollment with the configured control plane failed: "+err.Error())
				e.Err = err
				return e
			}
			s.reload(c.Request().Context())
		}
		if *req.On && !s.Status().Enrolled {
			return errNotEnrolled
		}
		if err := s.SetSharing(c.Request().Context(), *req.On, "admin-api"); err != nil {
			return internal("could not persist the switch", err)
		}
		return c.JSON(http.StatusOK, s.Status())
	})
	g.GET("/ledger", func(c echo.Context) error {
		var after int64
		if v := c.QueryParam("after_seq"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return errAfterSeq
			}
			after = n
		}
		entries, err := s.Ledger(c.Request().Context())
		if err != nil && !errors.Is(err, io.EOF) {
			return internal("could not read the ledger", err)
		}
		out := make([]LedgerEntry, 0, len(entries))
		for _, e := range entries {
			// Enrollment exchanges carry no sequence number: listed
			// only when reading from the start.
			if e.Seq > after || e.Kind != "" && after == 0 {
				out = append(out, e)
			}
		}
		return c.JSON(http.StatusOK, map[string]any{"entries": out})
	})
}

// The telemetry routes' refusals; the admin listener answers every
// returned error in its one shape (see edge.Error.AdminBody).
var (
	errSharingBody = edge.StatusError(http.StatusBadRequest, `send {"on": true} or {"on": false}`)
	errAfterSeq    = edge.StatusError(http.StatusBadRequest, "after_seq must be an integer")
	errNotEnrolled = &edge.Error{Status: http.StatusConflict, Code: "not_enrolled", Message: "enroll first: codex-edge telemetry enroll --url URL --token TOKEN"}
)

func internal(msg string, err error) *edge.Error {
	e := edge.StatusError(http.StatusInternalServerError, msg)
	e.Err = err
	return e
}
