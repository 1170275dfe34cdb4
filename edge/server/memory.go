package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/memory"
)

// maxMemoryRequestBytes bounds a memory set's JSON body: the text at its
// limit, every byte escaped as \u00XX at worst, and the fields around it.
const maxMemoryRequestBytes = 6*edge.MaxMemoryBytes + 4096

// registerMemories adds the memory routes to the admin API, as the
// `codex-edge memory` commands (ORG is an org id or name; the key, for a
// key's memory, is the key_id query parameter):
//
//	GET    /orgs/:org/memories        {"memories":[{"name","key_id","version","bytes","tokens"}]}
//	PUT    /orgs/:org/memories/:name  {"text":"…"} → the new version, as in the list
//	GET    /orgs/:org/memories/:name  the memory with its "text"
//	DELETE /orgs/:org/memories/:name  {"name","key_id","removed":true}
//
// A change applies on this instance at once, on others within
// CODEX_CHANGE_POLL.
func (s *Server) registerMemories(g *echo.Group) {
	g.GET("/orgs/:org/memories", s.listMemories)
	g.PUT("/orgs/:org/memories/:name", s.setMemory)
	g.GET("/orgs/:org/memories/:name", s.showMemory)
	g.DELETE("/orgs/:org/memories/:name", s.removeMemory)
}

func (s *Server) memories() memory.Service { return memory.Service{Store: s.store, Keys: s.keys} }

var (
	errMemoryBody       = edge.StatusError(http.StatusBadRequest, `the body must be {"text":"…"}`)
	errMemoryUnreadable = &edge.Error{Status: http.StatusGone, Code: "memory_unreadable", Message: memory.ErrUnreadable.Error()}
)

func (s *Server) listMemories(c echo.Context) error {
	ctx := c.Request().Context()
	o, err := s.findOrg(ctx, c.Param("org"))
	if err != nil {
		return err
	}
	infos, err := s.memories().List(ctx, o.ID)
	if err != nil {
		return storeError(fmt.Errorf("admin: list memories: %w", err))
	}
	if infos == nil {
		infos = []memory.Info{}
	}
	return c.JSON(http.StatusOK, map[string]any{"memories": infos})
}

func (s *Server) setMemory(c echo.Context) error {
	ctx := c.Request().Context()
	var req struct {
		Text *string `json:"text"`
	}
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, maxMemoryRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Text == nil {
		return errMemoryBody
	}
	o, err := s.findOrg(ctx, c.Param("org"))
	if err != nil {
		return err
	}
	keyID, name := c.QueryParam("key_id"), c.Param("name")
	info, err := s.memories().Set(ctx, o.ID, keyID, name, []byte(*req.Text))
	if err != nil {
		return storeError(fmt.Errorf("admin: set memory: %w", err))
	}
	s.dir.ForgetOrg(o.ID)
	s.log.Info("memory set", "org", o.ID, "key", keyID, "memory", info.Name, "version", info.Version)
	if err := audit.Admin(ctx, s.store, audit.API(c.Request()), audit.MemorySet(o.ID, keyID, info.Name, info.Version, info.Bytes)); err != nil {
		return storeUnavailable(fmt.Errorf("admin: the memory was set, but %w", err))
	}
	return c.JSON(http.StatusOK, info)
}

func (s *Server) showMemory(c echo.Context) error {
	ctx := c.Request().Context()
	o, err := s.findOrg(ctx, c.Param("org"))
	if err != nil {
		return err
	}
	text, info, err := s.memories().Show(ctx, o.ID, c.QueryParam("key_id"), c.Param("name"))
	if errors.Is(err, memory.ErrUnreadable) {
		return errMemoryUnreadable
	}
	if err != nil {
		return storeError(fmt.Errorf("admin: show memory: %w", err))
	}
	return c.JSON(http.StatusOK, struct {
		memory.Info
		Text string `json:"text"`
	}{info, string(text)})
}

func (s *Server) removeMemory(c echo.Context) error {
	ctx := c.Request().Context()
	o, err := s.findOrg(ctx, c.Param("org"))
	if err != nil {
		return err
	}
	keyID, name := c.QueryParam("key_id"), c.Param("name")
	if err := s.memories().Remove(ctx, o.ID, keyID, name); err != nil {
		return storeError(fmt.Errorf("admin: remove memory: %w", err))
	}
	s.dir.ForgetOrg(o.ID)
	s.log.Info("memory removed", "org", o.ID, "key", keyID, "memory", name)
	if err := audit.Admin(ctx, s.store, audit.API(c.Request()), audit.MemoryRemoved(o.ID, keyID, name)); err != nil {
		return storeUnavailable(fmt.Errorf("admin: the memory was removed, but %w", err))
	}
	return c.JSON(http.StatusOK, map[string]any{"name": name, "key_id": keyID, "removed": true})
}

// findOrg accepts an org id or name, as the CLI does.
func (s *Server) findOrg(ctx context.Context, ref string) (edge.Org, error) {
	o, err := s.store.Org(ctx, ref)
	if err == nil {
		return o, nil
	}
	if !errors.Is(err, edge.ErrNotFound) {
		return edge.Org{}, storeUnavailable(fmt.Errorf("admin: look up org: %w", err))
	}
	orgs, err := s.store.Orgs(ctx)
	if err != nil {
		return edge.Org{}, storeUnavailable(fmt.Errorf("admin: list orgs: %w", err))
	}
	for _, o := range orgs {
		if o.Name == ref {
			return o, nil
		}
	}
	return edge.Org{}, edge.StatusError(http.StatusNotFound, fmt.Sprintf("no org %q", ref))
}

// storeError passes on what the caller did wrong (an invalid, unknown or
// conflicting memory, as edge.ErrorFor maps them) and makes any other
// failure the store's: 503, retry.
func storeError(err error) error {
	if errors.Is(err, edge.ErrInvalid) || errors.Is(err, edge.ErrNotFound) || errors.Is(err, edge.ErrConflict) {
		return err
	}
	return storeUnavailable(err)
}
