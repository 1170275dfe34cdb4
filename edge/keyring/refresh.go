package keyring

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Refresh re-unwraps cached DEKs in use through their master key in the
// background, before they expire (see the package comment), RefreshWorkers
// at a time, until ctx ends. Run it in its own goroutine for the life of
// the keyring. Without it a DEK in use is unwrapped again on the request
// path once KeyLifetime is over.
func (k *Keyring) Refresh(ctx context.Context) {
	var wg sync.WaitGroup
	for range RefreshWorkers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case dk := <-k.refreshes:
					k.refreshKey(ctx, dk)
				}
			}
		})
	}
	k.refreshing.Store(true)
	<-ctx.Done()
	k.refreshing.Store(false)
	wg.Wait()
	// Let go of what is still queued (a queued DEK holds its cipher).
	for {
		select {
		case dk := <-k.refreshes:
			dk.queued.Store(false)
		default:
			return
		}
	}
}

// refreshAhead queues a background re-unwrap of dk, a cached DEK due for
// one, unless one is queued or running already or Refresh is not running.
func (k *Keyring) refreshAhead(dk *dekKey) {
	if !k.refreshing.Load() || !dk.queued.CompareAndSwap(false, true) {
		return
	}
	select {
	case k.refreshes <- dk:
	default:
		dk.queued.Store(false) // queue full: its next use queues it
	}
}

// refreshKey unwraps dk's DEK again through its master key, which caches
// the new key in its place with a new lifetime. It does nothing for a DEK
// dropped or replaced meanwhile, and caches nothing when a purge (a shred,
// a refused probe) happens while it runs.
func (k *Keyring) refreshKey(ctx context.Context, dk *dekKey) {
	// Taken before anything is read: a purge from here on keeps the
	// result out of the cache.
	e := k.epoch.Load()
	if cur, ok := k.keys.Peek(dk.id); !ok || cur != dk {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	// The DEK as the store has it now (rewrapped, or shredded elsewhere).
	v, ok := k.views.Peek(dk.org)
	var err error
	if !ok || v.stale.Load() || k.now().Sub(v.checked) >= k.revalidate {
		v, err = k.loadView(ctx, dk.org)
	}
	if err == nil {
		d, ok := v.deks[dk.id]
		if !ok {
			k.keys.Remove(dk.id) // shredded: no longer a key of the org
			return
		}
		_, err = k.unwrap(ctx, d, e)
	}
	switch {
	case err == nil:
		k.stats.refreshes.Add(1)
		if _, failed := k.refreshFailing.LoadAndDelete(dk.org); failed {
			k.log.InfoContext(ctx, "keyring: data key re-unwrapped again", "org_id", dk.org, "dek_id", dk.id.String())
		}
	case errors.Is(err, ErrUnreadable):
		// Refused (unwrap logged it and remembers the refusal): drop the
		// key now, as a refused probe does, and what it opened.
		k.stats.refreshRefusals.Add(1)
		k.keys.Remove(dk.id)
		if k.onPurge != nil {
			k.onPurge([]string{dk.org})
		}
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		dk.queued.Store(false) // shutting down
	default:
		// The master key (or the store) could not tell: keep the key
		// until it expires and try again after Revalidate.
		k.stats.refreshErrors.Add(1)
		dk.next.Store(time.Now().Add(k.revalidate).UnixNano())
		dk.queued.Store(false)
		if _, failing := k.refreshFailing.LoadOrStore(dk.org, struct{}{}); !failing {
			k.log.WarnContext(ctx, "keyring: background re-unwrap of a data key failed; the cached key is used until it expires",
				"org_id", dk.org, "dek_id", dk.id.String(), "err", err)
		}
	}
}
