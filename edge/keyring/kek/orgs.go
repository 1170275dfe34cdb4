package kek

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/byok"
)

// Ephemeral is the reference of an org whose own key is sent over the
// admin API (PUT /admin/v1/orgs/{org}/byok) and held in memory only: after
// a restart its content is unreadable until the key is sent again.
const Ephemeral = "byok-ephemeral"

// Default is what `codex-edge orgs kek set` takes for "the edge's default
// master key (CODEX_KEK)"; it is stored as the empty reference.
const Default = "default"

// ParseOrg parses an org's own master key reference as given to
// `codex-edge orgs create --kek` and `orgs kek set`: "awskms:<arn>", or
// "default" (returned as ""). An org's own key must be one the org
// controls, so local and byok (the edge's own keys) are refused.
func ParseOrg(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, Default) {
		return "", nil
	}
	if strings.EqualFold(s, Ephemeral) {
		return Ephemeral, nil
	}
	spec, err := Parse(s)
	if err != nil {
		return "", err
	}
	if spec.Kind != AWSKMS {
		return "", fmt.Errorf("an org's own master key is awskms:<key-arn>, %s or %q (the edge's %s), not %q", Ephemeral, Default, Env, s)
	}
	return spec.String(), nil
}

// OrgKeys holds the orgs' own master keys (DESIGN §11, per-org master
// keys): which org has one, and one MasterKey per distinct reference, so
// that many orgs on one customer key share a client and a probe. Master is
// the keyring's Options.OrgMaster. It is safe for concurrent use.
type OrgKeys struct {
	list func(ctx context.Context) (map[string]string, error)
	open func(ctx context.Context, ref string) (keyring.MasterKey, error)

	mu   sync.RWMutex
	refs map[string]string            // org id → reference
	keys map[string]keyring.MasterKey // reference → master key
	bad  map[string]error             // reference → why it could not be opened
	eph  map[string]keyring.MasterKey // org id → its ephemeral BYOK key, memory only
}

// NewOrgKeys returns an OrgKeys that reads the orgs' references with list
// (the store's OrgMasterKeys) and opens a reference with open (nil:
// OpenOrg). It holds nothing until Load.
func NewOrgKeys(list func(ctx context.Context) (map[string]string, error), open func(ctx context.Context, ref string) (keyring.MasterKey, error)) *OrgKeys {
	if open == nil {
		open = OpenOrg
	}
	return &OrgKeys{list: list, open: open, refs: map[string]string{}, keys: map[string]keyring.MasterKey{}, bad: map[string]error{}, eph: map[string]keyring.MasterKey{}}
}

// OpenOrg opens an org's own master key reference ("awskms:<arn>"). It
// makes no KMS call.
func OpenOrg(ctx context.Context, ref string) (keyring.MasterKey, error) {
	spec, err := Parse(ref)
	if err != nil {
		return nil, err
	}
	if spec.Kind != AWSKMS {
		return nil, fmt.Errorf("org master key %q: only awskms keys can be an org's own", ref)
	}
	m, _, err := Open(ctx, spec, nil, "")
	return m, err
}

// ProbeOrg checks that m, an org's own master key, can be used for orgID:
// its probe runs under the org's encryption context, as the key policy a
// customer writes allows. A key that cannot probe is not checked.
func ProbeOrg(ctx context.Context, m keyring.MasterKey, orgID string) error {
	if sp, ok := m.(interface{ SetProbeOrg(string) }); ok {
		sp.SetProbeOrg(orgID)
	}
	p, ok := m.(keyring.Prober)
	if !ok {
		return nil
	}
	return p.Probe(ctx)
}

// Previous is the from argument of Keyring.RewrapOrg when an org moves off
// its own AWS KMS key: a data key still wrapped by that earlier key is
// opened with it, named by the ARN recorded with the data key (nil for
// any other data key).
func Previous(ctx context.Context) func(ref, version string) keyring.MasterKey {
	return func(ref, version string) keyring.MasterKey {
		if ref != string(AWSKMS) || version == "" {
			return nil
		}
		m, err := OpenOrg(ctx, string(AWSKMS)+":"+version)
		if err != nil {
			return nil
		}
		return m
	}
}

// Load re-reads which orgs have their own master key and opens the
// references not seen before. It returns the orgs whose reference changed,
// so the caller can drop their cached data keys.
func (o *OrgKeys) Load(ctx context.Context) ([]string, error) {
	refs, err := o.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("org master keys: %w", err)
	}
	opened := map[string]keyring.MasterKey{}
	failed := map[string]error{}
	o.mu.RLock()
	for _, ref := range refs {
		if ref == Ephemeral {
			continue
		}
		if _, ok := o.keys[ref]; ok {
			continue
		}
		if _, ok := opened[ref]; ok {
			continue
		}
		m, err := o.open(ctx, ref)
		if err != nil {
			failed[ref] = err
			continue
		}
		opened[ref] = m
	}
	o.mu.RUnlock()

	o.mu.Lock()
	defer o.mu.Unlock()
	var changed []string
	for org, ref := range refs {
		if o.refs[org] != ref {
			changed = append(changed, org)
		}
	}
	for org := range o.refs {
		if _, ok := refs[org]; !ok {
			changed = append(changed, org)
		}
	}
	for ref, m := range opened {
		// Two loads at once (the change feed's and one before a data key
		// is made) may both have opened ref: keep the first, since data
		// keys already unwrapped by it are what Watch probes it for.
		if _, ok := o.keys[ref]; !ok {
			o.keys[ref] = m
		}
	}
	used := map[string]bool{}
	for _, ref := range refs {
		used[ref] = true
	}
	for ref := range o.keys {
		if !used[ref] {
			delete(o.keys, ref)
		}
	}
	o.bad = failed
	o.refs = refs
	// Probe each key under the encryption context of one org that uses it
	// (the smallest id, so every instance picks the same): the customer's
	// key policy allows that org's id, not a made-up probe id.
	first := map[string]string{}
	for org, ref := range refs {
		if f, ok := first[ref]; !ok || org < f {
			first[ref] = org
		}
	}
	for ref, m := range o.keys {
		if sp, ok := m.(interface{ SetProbeOrg(string) }); ok {
			sp.SetProbeOrg(first[ref])
		}
	}
	return changed, nil
}

// Master returns the org's own master key, nil when the org uses the
// edge's default one, and keyring.Unavailable when its reference could not
// be opened: the org's data is then unreadable, never sealed under the
// default key instead.
func (o *OrgKeys) Master(orgID string) keyring.MasterKey {
	o.mu.RLock()
	defer o.mu.RUnlock()
	ref, ok := o.refs[orgID]
	if !ok {
		return nil
	}
	if ref == Ephemeral {
		if m, ok := o.eph[orgID]; ok {
			return m
		}
		return keyring.Unavailable(Ephemeral)
	}
	if m, ok := o.keys[ref]; ok {
		return m
	}
	return keyring.Unavailable(ref)
}

// Ref returns the org's own master key reference, "" for the default.
func (o *OrgKeys) Ref(orgID string) string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.refs[orgID]
}

// Distinct returns every distinct org master key, by reference, with the
// orgs that use it.
func (o *OrgKeys) Distinct() map[string][]string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	d := map[string][]string{}
	for org, ref := range o.refs {
		d[ref] = append(d[ref], org)
	}
	return d
}

// Masters returns every distinct org master key (keyring
// Options.OrgMasters, probed by Watch).
func (o *OrgKeys) Masters() []keyring.MasterKey {
	o.mu.RLock()
	defer o.mu.RUnlock()
	ms := make([]keyring.MasterKey, 0, len(o.keys))
	for _, m := range o.keys {
		ms = append(ms, m)
	}
	return ms
}

// SetEphemeral holds key (a 256-bit BYOK key) in memory as the org's own
// master key. The org must be set to byok-ephemeral.
func (o *OrgKeys) SetEphemeral(orgID string, key []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.refs[orgID] != Ephemeral {
		return fmt.Errorf("org %s does not take an ephemeral key (orgs kek set --org ORG %s)", orgID, Ephemeral)
	}
	m, err := byok.New(key)
	if err != nil {
		return err
	}
	o.eph[orgID] = m
	return nil
}

// Waiting returns the orgs set to byok-ephemeral whose key has not been
// sent since start-up: their content is unreadable until it is.
func (o *OrgKeys) Waiting() []string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var w []string
	for org, ref := range o.refs {
		if _, ok := o.eph[org]; ref == Ephemeral && !ok {
			w = append(w, org)
		}
	}
	slices.Sort(w)
	return w
}

// Held returns the orgs whose ephemeral BYOK key this process holds in
// memory (sent since start-up), whatever their reference is now.
func (o *OrgKeys) Held() []string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	h := make([]string, 0, len(o.eph))
	for org := range o.eph {
		h = append(h, org)
	}
	slices.Sort(h)
	return h
}
