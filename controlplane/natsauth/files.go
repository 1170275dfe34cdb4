package natsauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/shared/wire"
)

// dirStore keeps the authority in files, for a single instance and as
// earlier versions did: <name>.nk.sealed for the account seeds,
// orgs/<org>.nk.sealed for the orgs' and ingest.jwt for the ingest
// account (the one account it keeps).
type dirStore struct {
	dir string
	mu  sync.Mutex // one writer at a time
}

var _ Store = (*dirStore)(nil)

func (d *dirStore) secretPath(name string) (string, error) {
	switch rec, _ := strings.CutPrefix(name, "nats/"); rec {
	case "operator", "system", "ingest":
		return filepath.Join(d.dir, rec+".nk.sealed"), nil
	}
	return "", fmt.Errorf("no file for secret %q", name)
}

func (d *dirStore) orgPath(orgID string) string {
	return filepath.Join(d.dir, "orgs", orgID+".nk.sealed")
}

func readFile(path, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", what, controlplane.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

func (d *dirStore) DeploymentSecret(_ context.Context, name string) ([]byte, error) {
	path, err := d.secretPath(name)
	if err != nil {
		return nil, err
	}
	return readFile(path, filepath.Base(path))
}

// addOnce writes b to path unless the file exists, and returns the file's
// content.
func (d *dirStore) addOnce(path string, b []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, err := readFile(path, filepath.Base(path))
	if !errors.Is(err, controlplane.ErrNotFound) {
		return old, err
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return nil, err
	}
	return b, nil
}

func (d *dirStore) AddDeploymentSecret(_ context.Context, name string, sealed []byte) ([]byte, error) {
	path, err := d.secretPath(name)
	if err != nil {
		return nil, err
	}
	return d.addOnce(path, sealed)
}

func (d *dirStore) NATSOrgKey(_ context.Context, orgID string) ([]byte, error) {
	return readFile(d.orgPath(orgID), "nats key of org "+orgID)
}

func (d *dirStore) AddNATSOrgKey(_ context.Context, orgID string, sealed []byte) ([]byte, error) {
	return d.addOnce(d.orgPath(orgID), sealed)
}

func (d *dirStore) DeleteNATSOrgKey(_ context.Context, orgID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return removeOrgFiles(d.dir, orgID)
}

// NATSAccount returns ingest.jwt, at version 1.
func (d *dirStore) NATSAccount(_ context.Context, _ string) (string, int64, error) {
	b, err := readFile(filepath.Join(d.dir, "ingest.jwt"), "ingest account jwt")
	if err != nil {
		return "", 0, err
	}
	return string(b), 1, nil
}

func (d *dirStore) UpdateNATSAccount(ctx context.Context, account string, fn func(string, int64) (string, error)) (string, int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, v, err := d.NATSAccount(ctx, account)
	if err != nil && !errors.Is(err, controlplane.ErrNotFound) {
		return "", 0, err
	}
	next, err := fn(cur, v)
	if err != nil {
		return "", 0, err
	}
	if next != cur {
		if err := writeFileAtomic(filepath.Join(d.dir, "ingest.jwt"), []byte(next), 0o600); err != nil {
			return "", 0, err
		}
	}
	return next, 1, nil
}

// removeOrgFiles removes an org's seed files from dir, if any.
func removeOrgFiles(dir, orgID string) error {
	if dir == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "orgs")); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for _, f := range []string{orgID + ".nk.sealed", orgID + ".nk"} {
		if err := removeSynced(filepath.Join(dir, "orgs", f)); err != nil {
			return err
		}
	}
	return nil
}

// importFiles takes the authority an earlier version kept in dir over
// into st, when st holds no operator yet: the instances then go on with
// the operator, accounts and org keys the servers and edges know. The
// sealed seeds are copied as they are (their binding names did not
// change). The org keys and the claims go first and the operator last:
// the stored operator marks the import done, so an interrupted one is
// done again. A seed the store already holds (another instance's import
// or creation, racing) must be the same as the file's: else Open fails,
// since one of the two authorities would be lost. The files are left in
// place, for going back to the earlier version; they are ignored once the
// store holds an operator.
func importFiles(ctx context.Context, st Store, dir string, s *sealer.Sealer) error {
	_, err := st.DeploymentSecret(ctx, secretName("operator"))
	if err == nil {
		return nil
	}
	if !errors.Is(err, controlplane.ErrNotFound) {
		return fmt.Errorf("nats authority: %w", err)
	}
	old := &dirStore{dir: dir}
	if _, err := old.DeploymentSecret(ctx, secretName("operator")); errors.Is(err, controlplane.ErrNotFound) {
		return nil // nothing to take over
	} else if err != nil {
		return fmt.Errorf("nats authority: %w", err)
	}
	des, err := os.ReadDir(filepath.Join(dir, "orgs"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("nats authority: %w", err)
	}
	for _, de := range des {
		org, ok := strings.CutSuffix(de.Name(), ".nk.sealed")
		if !ok || !wire.IDChars.Valid(org) {
			continue
		}
		sealed, err := old.NATSOrgKey(ctx, org)
		if err != nil {
			return fmt.Errorf("nats authority: %w", err)
		}
		got, err := st.AddNATSOrgKey(ctx, org, sealed)
		if err != nil {
			return fmt.Errorf("nats authority: import org %s: %w", org, err)
		}
		if err := sameSeed(ctx, s, "org/"+org, got, sealed); err != nil {
			return err
		}
	}
	if ingest, err := old.DeploymentSecret(ctx, secretName("ingest")); err == nil {
		kp, err := openSeed(ctx, s, "ingest", ingest)
		if err != nil {
			return err
		}
		pub, _ := kp.PublicKey()
		if j, _, err := old.NATSAccount(ctx, pub); err == nil {
			// Checked when Open loads it, as any stored JWT.
			if _, _, err := st.UpdateNATSAccount(ctx, pub, func(cur string, _ int64) (string, error) {
				if cur != "" {
					return cur, nil
				}
				return j, nil
			}); err != nil {
				return fmt.Errorf("nats authority: import the ingest account: %w", err)
			}
		} else if !errors.Is(err, controlplane.ErrNotFound) {
			return fmt.Errorf("nats authority: %w", err)
		}
	} else if !errors.Is(err, controlplane.ErrNotFound) {
		return fmt.Errorf("nats authority: %w", err)
	}
	for _, name := range []string{"system", "ingest", "operator"} {
		sealed, err := old.DeploymentSecret(ctx, secretName(name))
		if errors.Is(err, controlplane.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("nats authority: %w", err)
		}
		got, err := st.AddDeploymentSecret(ctx, secretName(name), sealed)
		if err != nil {
			return fmt.Errorf("nats authority: import %s: %w", name, err)
		}
		if err := sameSeed(ctx, s, name, got, sealed); err != nil {
			return err
		}
	}
	return nil
}

// sameSeed checks that the stored seed of record name is the file's.
func sameSeed(ctx context.Context, s *sealer.Sealer, name string, stored, file []byte) error {
	if bytes.Equal(stored, file) {
		return nil
	}
	a, err := s.Open(ctx, binding(name), stored)
	if err != nil {
		return fmt.Errorf("open the stored nats %s seed: %w", name, err)
	}
	defer clear(a)
	b, err := s.Open(ctx, binding(name), file)
	if err != nil {
		return fmt.Errorf("open the nats %s seed file: %w", name, err)
	}
	defer clear(b)
	if !bytes.Equal(a, b) {
		return fmt.Errorf("nats authority: the store holds another %s key than the data directory's file, which an earlier version made: one of the two authorities would be lost; remove the wrong one", name)
	}
	return nil
}

// sealPlaintext seals the plaintext seed files of an earlier version found
// in dir, and removes them and their temporaries.
func sealPlaintext(ctx context.Context, dir string, s *sealer.Sealer) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for _, name := range []string{"operator", "system", "ingest"} {
		if err := sealPlain(ctx, s, dir, name, name); err != nil {
			return err
		}
	}
	des, err := os.ReadDir(filepath.Join(dir, "orgs"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("nats authority: %w", err)
	}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".nk.tmp") {
			// An earlier version's interrupted write: a plaintext seed.
			if err := os.Remove(filepath.Join(dir, "orgs", de.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("nats authority: %w", err)
			}
			continue
		}
		org, ok := strings.CutSuffix(de.Name(), ".nk")
		if !ok || !wire.IDChars.Valid(org) {
			continue
		}
		if err := sealPlain(ctx, s, dir, filepath.Join("orgs", org), "org/"+org); err != nil {
			return err
		}
	}
	return nil
}

// sealPlain seals the plaintext <file>.nk into <file>.nk.sealed as record
// name (written, synced, renamed), then removes it. A migration
// interrupted before the rename is done again; one interrupted after it
// finds both files and removes the plaintext once it matches the sealed
// seed. A sealed file that does not open is refused, never replaced.
func sealPlain(ctx context.Context, s *sealer.Sealer, dir, file, name string) error {
	sealedPath := filepath.Join(dir, file+".nk.sealed")
	plainPath := filepath.Join(dir, file+".nk")
	// An earlier version's temporary file may hold a plaintext seed.
	if err := os.Remove(plainPath + ".tmp"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s.tmp: %w", filepath.Base(plainPath), err)
	}
	plain, err := os.ReadFile(plainPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Base(plainPath), err)
	}
	defer clear(plain)
	plain = bytes.TrimSpace(plain)

	sealed, err := os.ReadFile(sealedPath)
	if err == nil {
		seed, err := s.Open(ctx, binding(name), sealed)
		if err != nil {
			return fmt.Errorf("open %s: %w", filepath.Base(sealedPath), err)
		}
		defer clear(seed)
		if !bytes.Equal(plain, seed) {
			return fmt.Errorf("%s and %s hold different seeds: remove the one that is wrong", filepath.Base(plainPath), filepath.Base(sealedPath))
		}
		return removeSynced(plainPath)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", filepath.Base(sealedPath), err)
	}
	if _, err := nkeys.FromSeed(plain); err != nil {
		return fmt.Errorf("load %s: %w", filepath.Base(plainPath), err)
	}
	if sealed, err = s.Seal(ctx, binding(name), plain); err != nil {
		return fmt.Errorf("seal %s: %w", name, err)
	}
	if err := writeFileAtomic(sealedPath, sealed, 0o600); err != nil {
		return err
	}
	return removeSynced(plainPath)
}

// removeSynced removes path and syncs its directory, so the removal
// outlives a crash.
func removeSynced(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", filepath.Base(path), err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer func() { _ = d.Close() }() // a directory opened to sync it
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// writeFileAtomic writes data to path through a synced temporary file
// and a rename, then syncs the directory: path holds the old content or
// all of the new, never part of it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return syncDir(filepath.Dir(path))
}
