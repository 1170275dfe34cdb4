// Package schemas embeds the SQL migrations and wire schemas kept under
// schemas/, so that both binaries ship them and tests read the same files
// that operators review.
package schemas

import (
	"embed"
	"io/fs"
)

//go:embed edge
var edgeFS embed.FS

//go:embed controlplane wire
var controlplaneFS embed.FS

// EdgeSQLite holds the edge's SQLite migrations, in goose format.
func EdgeSQLite() fs.FS { return sub(edgeFS, "edge/sqlite") }

// EdgePostgres holds the edge's Postgres migrations, in goose format. They
// read the application role to grant from the session setting
// codex.app_role.
func EdgePostgres() fs.FS { return sub(edgeFS, "edge/postgres") }

// ControlplaneSQLite holds the control plane's SQLite migrations, in goose
// format.
func ControlplaneSQLite() fs.FS { return sub(controlplaneFS, "controlplane/sqlite") }

// ControlplanePostgres holds the control plane's Postgres migrations, in
// goose format.
func ControlplanePostgres() fs.FS { return sub(controlplaneFS, "controlplane/postgres") }

// Wire holds the JSON Schemas of the messages edges send the control plane.
func Wire() fs.FS { return sub(controlplaneFS, "wire") }

func sub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return s
}
