package telemetry

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
)

// RegisterAdmin adds the telemetry routes to the admin listener's group
// (mounted at /admin/v1/telemetry):
//
//	GET  ""          status, as `codex-edge telemetry status --json`
//	POST "/sharing"  {"on": true|false}: switch sharing, persisted
//	GET  "/ledger"   {"entries": [...]}: every batch that left; ?after_seq=N
//
// These are the only ways in besides the CLI: the edge only ever
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
			return c.JSON(http.StatusUnsupportedMediaType, apiErr("unsupported_media_type", "send application/json"))
		}
		var req struct {
			On *bool `json:"on"`
		}
		dec := json.NewDecoder(io.LimitReader(c.Request().Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.On == nil {
			return c.JSON(http.StatusBadRequest, apiErr("invalid_request", `send {"on": true} or {"on": false}`))
		}
		s.reload(c.Request().Context()) // an enrollment the CLI just made
		if *req.On && !s.Status().Enrolled {
			return c.JSON(http.StatusConflict, apiErr("not_enrolled", "enroll first: codex-edge telemetry enroll --url URL --token TOKEN"))
		}
		if err := s.SetSharing(c.Request().Context(), *req.On, "admin-api"); err != nil {
			return c.JSON(http.StatusInternalServerError, apiErr("internal", "could not persist the switch"))
		}
		return c.JSON(http.StatusOK, s.Status())
	})
	g.GET("/ledger", func(c echo.Context) error {
		var after int64
		if v := c.QueryParam("after_seq"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return c.JSON(http.StatusBadRequest, apiErr("invalid_request", "after_seq must be an integer"))
			}
			after = n
		}
		entries, err := s.Ledger()
		if err != nil && !errors.Is(err, io.EOF) {
			return c.JSON(http.StatusInternalServerError, apiErr("internal", "could not read the ledger"))
		}
		out := make([]LedgerEntry, 0, len(entries))
		for _, e := range entries {
			if e.Seq > after {
				out = append(out, e)
			}
		}
		return c.JSON(http.StatusOK, map[string]any{"entries": out})
	})
}

func apiErr(code, msg string) map[string]any {
	return map[string]any{"error": map[string]string{"code": code, "message": msg}}
}
