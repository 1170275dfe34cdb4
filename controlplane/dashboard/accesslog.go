package dashboard

import (
	"encoding/hex"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/controlplane"
)

// accessLogData is the org's access log as its owners and admins read it:
// every staff request, approval, denial, grant, page read, revocation and
// expiry concerning the org, newest first, and whether the chain verifies.
type accessLogData struct {
	Events     []accessRow
	ChainOK    bool
	ChainError string
	Head       string // hex of the last event's hash, to compare later
	// BreakGlass is whether staff may ask for access now, and Default
	// whether that is the plan's default (the owner made no choice).
	BreakGlass bool
	Default    bool
}

type accessRow struct {
	controlplane.AccessEvent
	Label string
	Hash  string
}

// accessLabels name the kinds for people.
var accessLabels = map[controlplane.AccessKind]string{
	controlplane.EventPlan:            "Plan changed",
	controlplane.EventRequest:         "Access requested",
	controlplane.EventApprove:         "Approved",
	controlplane.EventApprovalRefused: "Self-approval refused",
	controlplane.EventDeny:            "Denied",
	controlplane.EventGrant:           "Access granted",
	controlplane.EventUse:             "Page read",
	controlplane.EventRevoke:          "Revoked",
	controlplane.EventExpire:          "Expired",
}

func (s *Server) accessLogPage(c echo.Context) error {
	return s.renderAccessLog(c, http.StatusOK, "")
}

func (s *Server) renderAccessLog(c echo.Context, status int, msg string) error {
	u := sess(c).User
	events, err := s.store.AccessLog(c.Request().Context(), u.OrgID)
	if err != nil {
		return err
	}
	a := accessLogData{ChainOK: true}
	if err := controlplane.VerifyChain(events); err != nil {
		a.ChainOK, a.ChainError = false, err.Error()
		s.log.Error("access log chain broken", "org_id", u.OrgID, "err", err)
	}
	if n := len(events); n > 0 {
		a.Head = hex.EncodeToString(events[n-1].Hash[:])
	}
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		label := accessLabels[e.Kind]
		if label == "" {
			label = string(e.Kind)
		}
		a.Events = append(a.Events, accessRow{AccessEvent: e, Label: label, Hash: hex.EncodeToString(e.Hash[:8])})
	}
	d := s.base(c, "Access log")
	a.BreakGlass, a.Default = d.Org.BreakGlassAllowed(), d.Org.BreakGlass == nil
	d.Page, d.Error = a, msg
	if msg == "" {
		d.Notice = notice(c)
	}
	return s.render(c, status, "access_log", d)
}

// setBreakGlass is the owner's switch: off refuses every request and
// ends open requests and grants at once.
func (s *Server) setBreakGlass(c echo.Context) error {
	u := sess(c).User
	var on bool
	switch form(c, "break_glass") {
	case "on":
		on = true
	case "off":
	default:
		return s.renderAccessLog(c, http.StatusBadRequest, "Choose on or off.")
	}
	if err := s.store.SetBreakGlass(c.Request().Context(), u.OrgID, on, s.now()); err != nil {
		return err
	}
	s.log.Info("dashboard break-glass switched", "org_id", u.OrgID, "by", u.ID, "on", on)
	if on {
		return c.Redirect(http.StatusSeeOther, "/access-log?done=break-glass-on")
	}
	return c.Redirect(http.StatusSeeOther, "/access-log?done=break-glass-off")
}
