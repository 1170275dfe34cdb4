package dashboard

import (
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/shared/wire"
)

// heldField is one piece of metadata the control plane stores.
type heldField struct {
	Field    string
	Stored   string // how and at which resolution
	Reveals  string // what it can reveal, from the security document
	Examples []string
}

type heldGroup struct {
	Title  string
	Note   string
	Fields []heldField
}

// Inferences are what the combined metadata can reveal (the security
// document's honest-disclosure list).
var Inferences = []string{
	"Team work schedules and productivity patterns",
	"Rough project complexity based on token volumes",
	"Technology choices based on model selection",
	"Development velocity based on request frequency",
}

// NeverReceived lists what no code path of the control plane accepts: the
// only message it ingests is the usage batch, whose strings are bounded
// identifiers.
var NeverReceived = []string{
	"Prompts, messages, system prompts, tool calls or any other request content",
	"Responses, completions, embeddings or any other response content",
	"Provider API keys and gateway keys (only an HMAC pseudonym of a gateway key, unless you opt into names)",
	"Per-request rows or exact request timestamps: requests arrive summed per minute",
	"Request fingerprints or cache keys: the response cache and its hashes stay on your edge",
	"Client IP addresses, request headers, end-user identities",
	"File uploads, images, audio",
	"Memory text, or any digest of it: only each memory's name, version and token count",
	"Audit log records and their content (prompts, responses, their digests): only how many records of each capture level",
}

// edgeSettings is one edge's metadata minimization settings as the
// page shows them.
type edgeSettings struct {
	Name      string
	Known     bool // false: its batches carry no settings (an earlier edge) or none arrived
	Sent      string
	Withheld  string
	MinCount  int64
	Heartbeat string
}

type privacyData struct {
	EdgeSettings []edgeSettings
	Groups       []heldGroup
	Inferences   []string
	Never        []string
	Edges        int
	Members      int
}

func (s *Server) privacyPage(c echo.Context) error {
	ctx := c.Request().Context()
	org := actor(c).OrgID
	// The values this org's usage actually holds, over the longest
	// retention the overview reads.
	seen := map[controlplane.Dimension][]string{}
	now := s.now()
	rows, err := s.store.Usage(ctx, controlplane.UsageQuery{OrgID: org, From: now.Truncate(controlplane.Day).Add(-89 * controlplane.Day), To: now.Truncate(controlplane.Day).Add(controlplane.Day),
		Step: controlplane.Day, GroupBy: []controlplane.Dimension{controlplane.DimWorkspace, controlplane.DimProvider, controlplane.DimModel, controlplane.DimKeyRef}})
	if err != nil {
		return err
	}
	set := map[controlplane.Dimension]map[string]bool{}
	for _, r := range rows {
		for d, v := range r.Key {
			if set[d] == nil {
				set[d] = map[string]bool{}
			}
			set[d][v] = true
		}
	}
	for d, vs := range set {
		for v := range vs {
			seen[d] = append(seen[d], v)
		}
		sort.Strings(seen[d])
		if len(seen[d]) > 12 {
			seen[d] = append(seen[d][:12], "…")
		}
	}
	edges, err := s.store.Edges(ctx, org)
	if err != nil {
		return err
	}
	users, err := s.store.Users(ctx, org)
	if err != nil {
		return err
	}
	var es []edgeSettings
	for _, e := range edges {
		if e.Revoked() {
			continue
		}
		v := edgeSettings{Name: e.Name}
		if st := e.Settings; st != nil {
			v.Known, v.MinCount = true, st.MinCount
			v.Sent, v.Withheld = dimensionList(st.Dimensions, true), dimensionList(st.Dimensions, false)
			v.Heartbeat = (time.Duration(st.HeartbeatS) * time.Second).String()
		}
		es = append(es, v)
	}
	d := s.base(c, "What we can see")
	d.Page = privacyData{EdgeSettings: es, Groups: heldGroups(seen), Inferences: Inferences, Never: NeverReceived, Edges: len(edges), Members: len(users)}
	return s.render(c, http.StatusOK, "privacy", d)
}

// dimensionList names the row dimensions in (or, !in, not in) dims.
func dimensionList(dims []string, in bool) string {
	var out []string
	for _, d := range wire.Dimensions {
		if slices.Contains(dims, d) == in {
			out = append(out, strings.ReplaceAll(d, "_", " "))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func heldGroups(seen map[controlplane.Dimension][]string) []heldGroup {
	min := "per minute, kept " + days(controlplane.DefaultRetention.Minute) + "; per hour, kept " + days(controlplane.DefaultRetention.Hour) + "; per day, kept " + days(controlplane.DefaultRetention.Day)
	return []heldGroup{
		{
			Title: "Usage, summed per minute by your edges",
			Note:  "Each row adds up the requests of one minute that share every key below. Rolled up to hours and days as it ages: " + min + ".",
			Fields: []heldField{
				{"Time bucket (minute)", "start of the minute", "When your team is active", nil},
				{"Edge", "edge id", "Which of your deployments served the requests", nil},
				{"Workspace", "pseudonym unless you opt into names", "How usage splits between your teams or projects", seen[controlplane.DimWorkspace]},
				{"Provider", "e.g. openai, anthropic", "Which AI providers you use", seen[controlplane.DimProvider]},
				{"Model name", "as sent to the provider", "Which AI models you use", seen[controlplane.DimModel]},
				{"API key reference", "HMAC pseudonym of the gateway key unless you opt into names", "Which team member or service made the requests", seen[controlplane.DimKeyRef]},
				{"Cache hit / miss / bypass", "per row", "Repetition patterns", nil},
				{"Status class", "2xx, 4xx, 5xx…", "Error rates of your usage", nil},
				{"Request count", "per row", "How often you call AI models", nil},
				{"Token counts", "input, cached input, cache writes, output, reasoning; and how many requests reported none", "Request complexity and response length", nil},
				{"Cost and cache savings", "in billionths of a dollar, from your edge's price table", "Your spend patterns", nil},
				{"Latency histogram", "request counts in 14 latency buckets (10 ms … over 120 s)", "Response time patterns", nil},
				{"Refused by limits", "how many requests of the row your edge refused because of a rate limit or a budget", "How close your teams run to the limits you set", nil},
			},
		},
		{
			Title: "Budgets",
			Note:  "The spend caps you set on your edges, as each edge last reported them once a window while sharing is on.",
			Fields: []heldField{
				{"Workspace and API key reference", "pseudonyms unless you opt into names; none for a workspace's own budget", "Which teams have budgets", nil},
				{"Period, cap and spent", "day or month; in billionths of a dollar", "Your spend limits and how much of them is used", nil},
				{"Edge and time", "the edge that reported it and the end of its window", "When the edge last reported", nil},
			},
		},
		{
			Title: "Memories in use",
			Note:  "Which memories your edges injected into requests, summed by the hour (kept " + days(controlplane.DefaultRetention.Hour) + "). The memories' text never leaves your edges.",
			Fields: []heldField{
				{"Workspace and API key reference", "pseudonyms unless you opt into names; none for a workspace's own memory", "Which teams use memories", nil},
				{"Memory name and version", "as set on the edge (name@version); other when the edge withholds the memory dimension", "What your memories are called and how often they change", nil},
				{"Requests and tokens", "requests the memory was injected into, its tokens summed over them, and how many of those are the edge's estimate", "How large your memories are and what they add to your token use", nil},
			},
		},
		{
			Title: "Audit record counts",
			Note:  "How many audit records your edges wrote, summed by the hour (kept " + days(controlplane.DefaultRetention.Hour) + "). The records and their content stay on your edges.",
			Fields: []heldField{
				{"Workspace", "pseudonym unless you opt into names", "Which teams are audited", nil},
				{"Capture level and count", "none, hash or full, and how many records", "How much of your traffic you audit and at which level", nil},
			},
		},
		{
			Title: "Edges",
			Fields: []heldField{
				{"Name and version", "as the edge enrolled", "Your deployment names and software versions", nil},
				{"NATS public key", "the private half never leaves the edge", "Nothing beyond the edge's identity", nil},
				{"Enrolled, last seen, sharing", "times of enrollment and last batch; revocation time", "When each edge runs and reports", nil},
				{"Batch receipts", "edge, sequence number, window, time received, row count", "How often each edge reports", nil},
				{"Instance id", "per batch: a random id each edge process draws when it starts, derived from nothing about its host, so it names no machine, address or person; absent from edges too old to send it", "How many replicas of a deployment run, and when one restarts", nil},
			},
		},
		{
			Title: "Accounts",
			Fields: []heldField{
				{"Organization name", "as created", "Who you are", nil},
				{"Member emails and roles", "one row per member", "Who administers your AI usage", nil},
				{"Password hashes", "argon2id; the password itself is never stored", "Nothing (not reversible)", nil},
				{"Invitations and enrollment tokens", "SHA-256 of the token only, with creation and expiry times", "Nothing beyond their times", nil},
			},
		},
		{
			Title: "Staff access",
			Fields: []heldField{
				{"Plan", "free, pro or enterprise, set by us", "Which plan you are on", nil},
				{"Break-glass setting", "on or off as your owners chose, else the plan's default (off on enterprise)", "Nothing beyond the setting", nil},
				{"Access log", "every staff request, approval, denial, page read, revocation and expiry concerning your organization; hash-chained, never changed or deleted", "Which of our staff read your dashboard, when and why", nil},
			},
		},
	}
}

func days(d time.Duration) string {
	return num(int64(d/controlplane.Day)) + " days"
}
