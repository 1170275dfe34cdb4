package deploytest

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Unit is a parsed systemd unit file: section → key → values in order
// (a key may repeat, as Environment= and SystemCallFilter= do).
type Unit map[string]map[string][]string

// ParseUnit reads a systemd unit file: comments (# and ;), sections,
// key=value lines and backslash continuations.
func ParseUnit(r io.Reader) (Unit, error) {
	u := Unit{}
	section := ""
	sc := bufio.NewScanner(r)
	n := 0
	var cont strings.Builder
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cont.WriteString(body)
			cont.WriteByte(' ')
			continue
		}
		if cont.Len() > 0 {
			cont.WriteString(line)
			line = strings.TrimSpace(cont.String())
			cont.Reset()
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return nil, fmt.Errorf("line %d: malformed section header %q", n, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		if section == "" {
			return nil, fmt.Errorf("line %d: setting outside a section", n)
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("line %d: not key=value: %q", n, line)
		}
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read unit: %w", err)
	}
	if cont.Len() > 0 {
		return nil, fmt.Errorf("continuation at end of file")
	}
	return u, nil
}

// Last returns the effective value of a single-valued key ("" if unset).
func (u Unit) Last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// Environment returns the variables set by Environment= lines of
// [Service] (each line may set several NAME=value words).
func (u Unit) Environment() map[string]string {
	env := map[string]string{}
	for _, line := range u["Service"]["Environment"] {
		for _, w := range strings.Fields(line) {
			w = strings.Trim(w, `"`)
			if k, v, ok := strings.Cut(w, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}
