package dashboard

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/persiv/codex/controlplane"
)

var funcs = template.FuncMap{
	"num":       num,
	"usd":       usd,
	"usdExact":  usdExact,
	"pct":       pct,
	"ms":        ms,
	"ts":        ts,
	"ago":       func(t time.Time) string { return ago(t, time.Now()) },
	"bar":       shareBar,
	"stepName":  stepName,
	"lower":     strings.ToLower,
	"add":       func(a, b int64) int64 { return a + b },
	"roleRank":  roleRank,
	"canRemove": mayManage,
	// Nobody changes their own role: an owner demoting themself could
	// leave the org without one, an admin has nowhere up to go.
	"canChangeRole": func(actor, target controlplane.User) bool {
		return actor.ID != target.ID && mayManage(actor, target)
	},
	"short": func(id string) string {
		if _, rest, ok := strings.Cut(id, "_"); ok && len(rest) > 8 {
			return id[:len(id)-len(rest)] + rest[:8]
		}
		return id
	},
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"orDash": func(s string) string {
		if s == "" {
			return "—"
		}
		return s
	},
}

// num formats an integer with thousands separators.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// usd formats nano-dollars for reading: cents from a dollar up, four
// decimals below.
func usd(nano int64) string {
	neg := nano < 0
	if neg {
		nano = -nano
	}
	var s string
	if tenThousandths := (nano + 5e4) / 1e5; tenThousandths < 1e4 {
		s = fmt.Sprintf("$0.%04d", tenThousandths)
	} else {
		cents := (nano + 5e6) / 1e7 // rounded half up
		s = fmt.Sprintf("$%s.%02d", num(cents/100), cents%100)
	}
	if neg {
		return "-" + s
	}
	return s
}

// usdExact formats nano-dollars without rounding.
func usdExact(nano int64) string {
	sign := ""
	if nano < 0 {
		sign, nano = "-", -nano
	}
	return fmt.Sprintf("%s$%s.%09d", sign, num(nano/1e9), nano%1e9)
}

func pct(f float64) string {
	if f < 0 {
		return "—"
	}
	return trimZero(fmt.Sprintf("%.1f", f*100)) + "%"
}

func ms(f float64) string {
	if f < 0 {
		return "—"
	}
	if f >= 1000 {
		return trimZero(fmt.Sprintf("%.2f", f/1000)) + " s"
	}
	return fmt.Sprintf("%.0f ms", f)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}
