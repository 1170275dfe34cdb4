// Command vulncheck-called reads govulncheck -format json on stdin and
// prints one line per vulnerability the code calls (a finding whose trace
// reaches a function), deduplicated: ID, module@version, fixed version,
// and the first trace's entry point in our code. scripts/vulncheck.sh
// compares the IDs with its allow-list. Standard library only, so that it
// runs with `go run` from any checkout.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

type message struct {
	Finding *struct {
		OSV          string   `json:"osv"`
		FixedVersion string   `json:"fixed_version"`
		Trace        []*frame `json:"trace"`
	} `json:"finding"`
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	called := map[string]string{}
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "vulncheck-called: reading govulncheck's output:", err)
			os.Exit(2)
		}
		f := m.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" || called[f.OSV] != "" {
			continue
		}
		vuln, entry := f.Trace[0], f.Trace[len(f.Trace)-1]
		fixed := f.FixedVersion
		if fixed == "" {
			fixed = "none"
		}
		where := entry.Package + "." + entry.Function
		if entry.Position != nil {
			where = fmt.Sprintf("%s:%d %s", entry.Position.Filename, entry.Position.Line, where)
		}
		called[f.OSV] = fmt.Sprintf("%s\t%s@%s\tfixed: %s\tcalled from %s", f.OSV, vuln.Module, vuln.Version, fixed, where)
	}
	ids := make([]string, 0, len(called))
	for id := range called {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Println(called[id])
	}
}
