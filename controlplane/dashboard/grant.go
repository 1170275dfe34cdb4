package dashboard

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/controlplane"
)

// Break-glass reads: under an active grant, a staff member reads one
// org's dashboard as a viewer would, read-only, at
// StaffOrgPrefix/<org>/… (pages) and StaffAPIPrefix/<org>/… (JSON API).
// Without a grant, every one of those routes answers 404, the same as
// for an org that does not exist. Each read is logged in the org's access
// log before it is served.
const (
	StaffOrgPrefix = "/staff/orgs/"
	StaffAPIPrefix = "/staff/api/v1/orgs/"
)

const ctxGrant = "dashboard.grant"

// maxUseDetail bounds what a use event records of the URL read.
const maxUseDetail = 300

// requireGrant answers 404 unless the staff member holds an active grant
// to the org named in the path; otherwise it logs the read and serves it.
func (s *Server) requireGrant(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		st := staffOf(c).Staff
		what := c.Request().URL.RequestURI()
		if len(what) > maxUseDetail {
			what = what[:maxUseDetail]
		}
		g, err := s.store.UseGrant(c.Request().Context(), st.ID, c.Param("org"), c.Request().Method+" "+what, s.now())
		if errors.Is(err, controlplane.ErrNotFound) {
			return controlplane.ErrNotFound
		}
		if err != nil {
			return err
		}
		c.Set(ctxGrant, g)
		s.log.Info("staff read under a grant", "staff_id", st.ID, "org_id", g.OrgID, "request_id", g.ID, "path", c.Path())
		return next(c)
	}
}

// actor is who reads an org's page: the signed-in member, or, under a
// grant, a read-only viewer of the grant's org who is no member.
func actor(c echo.Context) controlplane.User {
	if g, ok := c.Get(ctxGrant).(controlplane.AccessRequest); ok {
		return controlplane.User{OrgID: g.OrgID, Role: controlplane.RoleViewer}
	}
	return sess(c).User
}

// registerGrantRoutes adds the org pages and API routes staff may read
// under a grant: GET only, every one behind requireGrant.
func (s *Server) registerGrantRoutes(e *echo.Echo) {
	pages := e.Group(StaffOrgPrefix+":org", s.pageHeaders, s.pageErrors, s.requireStaff, s.requireGrant)
	pages.GET("", func(c echo.Context) error {
		return c.Redirect(http.StatusSeeOther, StaffOrgPrefix+c.Param("org")+"/overview")
	})
	pages.GET("/overview", s.overviewPage)
	pages.GET("/fleet", s.fleetPage)
	pages.GET("/members", s.membersPage)
	pages.GET("/privacy", s.privacyPage)

	api := e.Group(StaffAPIPrefix+":org", s.apiHeaders, s.apiErrors, s.requireStaff, s.requireGrant)
	api.GET("/usage", s.apiUsage)
	api.GET("/edges", s.apiEdges)
	api.GET("/members", s.apiMembers)
}
