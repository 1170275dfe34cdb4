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

// EdgeSQLite holds the edge's SQLite migrations, in goose format.
func EdgeSQLite() fs.FS { return sub(edgeFS, "edge/sqlite") }

func sub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return s
}
