package deploytest

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Instruction is one Dockerfile instruction after line continuations are
// joined: Cmd upper-cased (FROM, RUN, ...), Args the rest of the line.
type Instruction struct {
	Line int // 1-based line of the instruction's first line
	Cmd  string
	Args string
}

// Stage is a build stage: its FROM and the instructions up to the next.
type Stage struct {
	From         Instruction
	Image, Name  string // image reference after ARG substitution; AS name
	Instructions []Instruction
}

// Dockerfile is a parsed Dockerfile: global ARG defaults and the stages.
type Dockerfile struct {
	Args   map[string]string
	Stages []Stage
}

// ParseDockerfile reads a Dockerfile: comments and parser directives are
// skipped, backslash continuations joined, heredocs refused (none of ours
// uses them, and a static check cannot see inside one). It does not run a
// shell: ARG defaults are substituted into FROM only.
func ParseDockerfile(r io.Reader) (*Dockerfile, error) {
	d := &Dockerfile{Args: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cur strings.Builder
	start, n := 0, 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := Instruction{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if strings.Contains(in.Args, "<<") && (in.Cmd == "RUN" || in.Cmd == "COPY") {
			return fmt.Errorf("line %d: heredocs are not supported", in.Line)
		}
		switch {
		case in.Cmd == "FROM":
			f := strings.Fields(in.Args)
			var image, name string
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					name = f[i+1]
					i++
				case image == "":
					image = f[i]
				}
			}
			if image == "" {
				return fmt.Errorf("line %d: FROM without an image", in.Line)
			}
			d.Stages = append(d.Stages, Stage{From: in, Image: d.expand(image), Name: name})
		case len(d.Stages) == 0:
			if in.Cmd != "ARG" {
				return fmt.Errorf("line %d: %s before the first FROM", in.Line, in.Cmd)
			}
			k, v, _ := strings.Cut(in.Args, "=")
			d.Args[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		default:
			s := &d.Stages[len(d.Stages)-1]
			s.Instructions = append(s.Instructions, in)
		}
		return nil
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 {
			if trimmed == "" || strings.HasPrefix(trimmed, "#") {
				continue
			}
			start = n
		} else if strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body)
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read dockerfile: %w", err)
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation at end of file", start)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(d.Stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return d, nil
}

// expand substitutes ${NAME} and $NAME from the global ARG defaults.
func (d *Dockerfile) expand(s string) string {
	return expandVars(s, func(k string) string { return d.Args[k] })
}

func expandVars(s string, get func(string) string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				b.WriteString(s[i:])
				break
			}
			name, _, _ := strings.Cut(s[i+2:i+end], ":")
			b.WriteString(get(name))
			i += end
			continue
		}
		j := i + 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j == i+1 {
			b.WriteByte('$')
			continue
		}
		b.WriteString(get(s[i+1 : j]))
		i = j - 1
	}
	return b.String()
}

// Final returns the last stage: the image that ships.
func (d *Dockerfile) Final() Stage { return d.Stages[len(d.Stages)-1] }

// All returns the instructions named cmd in stage s.
func (s Stage) All(cmd string) []Instruction {
	var out []Instruction
	for _, in := range s.Instructions {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// Last returns the last instruction named cmd in stage s (the one that
// takes effect), or a zero Instruction when there is none.
func (s Stage) Last(cmd string) Instruction {
	all := s.All(cmd)
	if len(all) == 0 {
		return Instruction{}
	}
	return all[len(all)-1]
}
