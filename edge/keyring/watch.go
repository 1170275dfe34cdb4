package keyring

import (
	"context"
	"errors"
	"time"
)

// probeWarnEvery rate-limits the warnings of a probe that keeps failing
// (or keeps being refused): one at the first failure, then at most one
// per period with the count since.
const probeWarnEvery = time.Minute

// Watch probes the default master key (Options.Master), if it implements
// Prober, and each distinct org master key (Options.OrgMasters) in use on
// this instance, every Options.ProbeInterval until ctx ends; with nothing
// to probe it returns at once. Run it in its own goroutine for the life of
// the keyring.
//
// When the provider definitively refuses (the probe's error wraps
// ErrUnreadable: KMS key disabled, pending deletion, deleted, access
// removed), Watch drops every unwrapped DEK the default master key
// unwrapped or generated, so the next Seal or Open must unwrap again and
// fails as unreadable, just as on a cold instance: an out-of-band
// revocation takes effect within ProbeInterval instead of KeyLifetime. It
// drops them again at every refused probe, in case an unwrap slipped
// through in between. Once the provider accepts again, nothing is needed:
// the next use unwraps again.
//
// When the probe cannot tell (network, throttling, timeout), cached keys
// keep working until KeyLifetime: a revocation the provider has not
// confirmed does not take the edge down. Such failures are counted in
// Stats and logged at most once per minute.
//
// The request path is unchanged: Seal and Open make no master-key call
// for a warm org whether Watch runs or not.
func (k *Keyring) Watch(ctx context.Context) {
	def, ok := k.master.(Prober)
	if !ok && k.orgMasters == nil {
		return
	}
	t := time.NewTicker(k.probeEvery)
	defer t.Stop()
	var w watchState
	orgs := map[MasterKey]*watchState{}
	for {
		if ok {
			k.probe(ctx, probed{Prober: def, m: k.master, isDefault: true}, &w)
		}
		k.probeOrgMasters(ctx, orgs)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probed is a master key Watch probes and whose unwrapped DEKs it drops on
// a refusal.
type probed struct {
	Prober
	m         MasterKey
	isDefault bool
}

// probeOrgMasters probes each distinct org master key (Options.OrgMasters)
// once, and only while this instance holds data keys it unwrapped: an org
// key with nothing cached costs no call, since the next use unwraps
// through the provider and meets a revocation there. So the KMS calls per
// interval are the number of distinct org keys in use on this instance,
// never one per org.
func (k *Keyring) probeOrgMasters(ctx context.Context, states map[MasterKey]*watchState) {
	if k.orgMasters == nil {
		return
	}
	inUse := k.mastersInUse()
	seen := map[MasterKey]bool{}
	for _, m := range k.orgMasters() {
		pr, ok := m.(Prober)
		if !ok || seen[m] {
			continue
		}
		seen[m] = true
		w := states[m]
		if w == nil {
			w = &watchState{}
			states[m] = w
		}
		if inUse[m] == 0 {
			k.stats.probesSkipped.Add(1)
			continue
		}
		k.probe(ctx, probed{Prober: pr, m: m}, w)
	}
	for m := range states {
		if !seen[m] {
			delete(states, m)
		}
	}
}

// mastersInUse counts the cached unwrapped DEKs per org master key.
func (k *Keyring) mastersInUse() map[MasterKey]int {
	n := map[MasterKey]int{}
	for _, id := range k.keys.Keys() {
		if dk, ok := k.keys.Peek(id); ok && !dk.byDefault && dk.master != nil {
			n[dk.master]++
		}
	}
	return n
}

// watchState is what Watch remembers between probes, for its logs.
type watchState struct {
	refused bool      // the last answered probe was a refusal
	failing int       // consecutive probes that could not tell
	quiet   int       // failures or refusals not logged since warned
	warned  time.Time // last rate-limited warning
}

// warnDue reports whether a repeated warning may be logged now.
func (w *watchState) warnDue(now time.Time) bool {
	if w.warned.IsZero() || now.Sub(w.warned) >= probeWarnEvery {
		w.warned = now
		return true
	}
	w.quiet++
	return false
}

func (k *Keyring) probe(ctx context.Context, p probed, w *watchState) {
	// A probe must not outlive its interval, or a hung connection would
	// delay the next one.
	pctx, cancel := context.WithTimeout(ctx, k.probeEvery)
	err := p.Probe(pctx)
	cancel()
	if ctx.Err() != nil {
		return // shutting down; the answer is moot
	}
	k.stats.probes.Add(1)
	ref := p.m.Ref()
	if v, ok := p.m.(interface{ KeyID() string }); ok {
		ref += ":" + v.KeyID()
	}
	switch {
	case err == nil:
		if w.refused {
			k.log.InfoContext(ctx, "keyring: master key accepts again; data keys will be unwrapped on next use", "master_ref", ref)
		} else if w.failing > 0 {
			k.log.InfoContext(ctx, "keyring: master key probe succeeds again", "master_ref", ref, "failed_probes", w.failing)
		}
		*w = watchState{}
	case errors.Is(err, ErrUnreadable):
		// Purge before counting, so that whoever sees the refusal counted
		// sees its effect.
		orgs := k.purgeMaster(p.m, p.isDefault)
		n := len(orgs)
		k.stats.probePurged.Add(uint64(n))
		if k.onPurge != nil && n > 0 {
			k.onPurge(orgs)
		}
		k.stats.probeRefusals.Add(1)
		// Log the revocation when it is first seen; after that only when
		// keys had been unwrapped again since the last purge (which means
		// unwraps succeed while the probe is refused, worth a look), and
		// then at most once per probeWarnEvery.
		if !w.refused {
			w.warned, w.quiet = k.now(), 0
			k.log.WarnContext(ctx, "keyring: master key refused by its provider; cached data keys dropped, content under it is unreadable",
				"master_ref", ref, "dropped_data_keys", n, "err", err)
		} else if n > 0 && w.warnDue(k.now()) {
			k.log.WarnContext(ctx, "keyring: master key still refused, but data keys had been unwrapped since; dropped again",
				"master_ref", ref, "dropped_data_keys", n, "unlogged", w.quiet, "err", err)
			w.quiet = 0
		}
		w.refused, w.failing = true, 0
	default:
		k.stats.probeErrors.Add(1)
		w.failing++
		if w.failing == 1 {
			w.warned, w.quiet = time.Time{}, 0
		}
		if w.warnDue(k.now()) {
			k.log.WarnContext(ctx, "keyring: master key probe failed; cached data keys kept",
				"master_ref", ref, "failed_probes", w.failing, "err", err)
		}
	}
}

// purgeMaster drops every unwrapped DEK the master key m (the default one
// when isDefault) unwrapped or generated and returns the org of each (one
// entry per DEK). The epoch bump keeps an unwrap that is in flight now
// from caching its result.
func (k *Keyring) purgeMaster(m MasterKey, isDefault bool) []string {
	k.epoch.Add(1)
	var orgs []string
	for _, id := range k.keys.Keys() {
		dk, ok := k.keys.Peek(id)
		if ok && ((isDefault && dk.byDefault) || (!isDefault && !dk.byDefault && dk.master == m)) {
			k.keys.Remove(id)
			orgs = append(orgs, dk.org)
		}
	}
	return orgs
}
