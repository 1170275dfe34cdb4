// Package awskms is the master key in AWS KMS: DEKs come from
// GenerateDataKey (AES_256) and are unwrapped with Decrypt, always under
// the encryption context {"org_id": <org>}, so a wrapped DEK cannot be
// replayed for another org and CloudTrail shows which org each call served.
//
// Open builds the client from the standard AWS configuration chain
// (environment, shared config, IAM role); AWS_ENDPOINT_URL_KMS points it at
// another endpoint, such as a local KMS in tests. Nothing is called at
// start-up: a disabled key makes data unreadable, not the edge unable to
// start.
//
// MasterKey implements keyring.Prober: with keyring.Watch running, a key
// disabled, scheduled for deletion or denied to us out of band takes effect
// within the probe interval instead of the keyring's KeyLifetime. See
// Probe for what it calls.
package awskms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/persiv/codex/edge/keyring"
)

// Ref is the master key reference recorded with DEKs this package wraps;
// the version is the ARN of the KMS key that wrapped the DEK.
const Ref = "awskms"

// ContextKey is the encryption-context key that carries the org id.
const ContextKey = "org_id"

// API is the part of *kms.Client this package uses; tests wrap it to
// count calls.
type API interface {
	GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, optFns ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
	Encrypt(ctx context.Context, in *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
	ReEncrypt(ctx context.Context, in *kms.ReEncryptInput, optFns ...func(*kms.Options)) (*kms.ReEncryptOutput, error)
	DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	ScheduleKeyDeletion(ctx context.Context, in *kms.ScheduleKeyDeletionInput, optFns ...func(*kms.Options)) (*kms.ScheduleKeyDeletionOutput, error)
}

var _ API = (*kms.Client)(nil)

// MasterKey implements keyring.MasterKey and keyring.Rewrapper with one
// KMS key (id, ARN, alias name or alias ARN).
type MasterKey struct {
	api   API
	keyID string

	mu         sync.Mutex
	arn        string // keyID resolved, for Current
	resolvedAt time.Time

	probeMu  sync.Mutex
	probe    probeBlob
	probeOrg string // encryption-context org_id of the probe; "" is ProbeOrgID
}

// SetProbeOrg makes Probe use the encryption context org_id=orgID instead
// of ProbeOrgID: an org's own key, whose key policy allows only that org's
// id, must be probed under it or every probe would look like a refusal.
func (m *MasterKey) SetProbeOrg(orgID string) {
	m.probeMu.Lock()
	defer m.probeMu.Unlock()
	if m.probeOrg != orgID {
		m.probeOrg, m.probe = orgID, probeBlob{}
	}
}

// probeBlob is a ciphertext KMS made for Probe; its plaintext was
// discarded at once.
type probeBlob struct {
	blob []byte
	arn  string // the key that made it
	at   time.Time
}

var (
	_ keyring.MasterKey = (*MasterKey)(nil)
	_ keyring.Rewrapper = (*MasterKey)(nil)
	_ keyring.Prober    = (*MasterKey)(nil)
)

// resolveTTL bounds how long Current trusts a resolved alias, which an
// operator may re-point to a new key to rotate.
const resolveTTL = time.Minute

// New returns a MasterKey using api and the KMS key keyID.
func New(api API, keyID string) (*MasterKey, error) {
	if err := ValidKeyID(keyID); err != nil {
		return nil, err
	}
	return &MasterKey{api: api, keyID: keyID}, nil
}

// Open builds a KMS client from the default AWS configuration chain and
// returns a MasterKey for keyID. When no region is configured and keyID is
// an ARN, the ARN's region is used. It makes no KMS call.
func Open(ctx context.Context, keyID string, optFns ...func(*config.LoadOptions) error) (*MasterKey, error) {
	if err := ValidKeyID(keyID); err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx, optFns...)
	if err != nil {
		return nil, fmt.Errorf("awskms: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		if a, err := arn.Parse(keyID); err == nil {
			cfg.Region = a.Region
		}
	}
	if cfg.Region == "" {
		return nil, errors.New("awskms: no AWS region: set AWS_REGION or use a key ARN")
	}
	return New(kms.NewFromConfig(cfg), keyID)
}

// ValidKeyID checks the shape of a KMS key id, ARN or alias.
func ValidKeyID(keyID string) error {
	switch {
	case keyID == "":
		return errors.New("awskms: empty key id (want awskms:<key-id-or-arn>)")
	case len(keyID) > 2048:
		return errors.New("awskms: key id longer than 2048 characters")
	case strings.ContainsFunc(keyID, func(r rune) bool { return r <= ' ' || r > '~' }):
		return errors.New("awskms: key id contains whitespace or non-ASCII characters")
	case strings.HasPrefix(keyID, "arn:"):
		a, err := arn.Parse(keyID)
		if err != nil || a.Service != "kms" {
			return fmt.Errorf("awskms: %q is not a KMS key or alias ARN", keyID)
		}
	}
	return nil
}

// KeyID is the configured key.
func (m *MasterKey) KeyID() string { return m.keyID }

// Ref implements keyring.MasterKey.
func (m *MasterKey) Ref() string { return Ref }

// LogValue shows the key id; KMS key ids are not secret.
func (m *MasterKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ref", Ref), slog.String("key_id", m.keyID))
}

func encContext(b keyring.Binding) map[string]string { return map[string]string{ContextKey: b.OrgID} }

// Generate implements keyring.MasterKey.
func (m *MasterKey) Generate(ctx context.Context, b keyring.Binding) ([]byte, keyring.Wrap, error) {
	out, err := m.api.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(m.keyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: encContext(b),
	})
	if err != nil {
		return nil, keyring.Wrap{}, classify("GenerateDataKey", err)
	}
	if len(out.Plaintext) != keyring.DEKSize {
		clear(out.Plaintext)
		return nil, keyring.Wrap{}, fmt.Errorf("awskms: GenerateDataKey returned a %d-byte key", len(out.Plaintext))
	}
	return out.Plaintext, keyring.Wrap{Ref: Ref, Version: aws.ToString(out.KeyId), Blob: out.CiphertextBlob}, nil
}

// Wrap implements keyring.MasterKey (KMS Encrypt; used when an org moves
// to KMS from another master key).
func (m *MasterKey) Wrap(ctx context.Context, b keyring.Binding, dek []byte) (keyring.Wrap, error) {
	out, err := m.api.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(m.keyID),
		Plaintext:         dek,
		EncryptionContext: encContext(b),
	})
	if err != nil {
		return keyring.Wrap{}, classify("Encrypt", err)
	}
	return keyring.Wrap{Ref: Ref, Version: aws.ToString(out.KeyId), Blob: out.CiphertextBlob}, nil
}

// Unwrap implements keyring.MasterKey. Whatever error KMS answers with
// (AWS says DisabledException or KMSInvalidStateException for a disabled
// key, local KMS says AccessDeniedException) means unreadable, unless it
// is a throttle or a server-side fault.
func (m *MasterKey) Unwrap(ctx context.Context, b keyring.Binding, w keyring.Wrap) ([]byte, error) {
	if w.Ref != Ref {
		return nil, fmt.Errorf("%w: data key wrapped by %q, not %q", keyring.ErrUnreadable, w.Ref, Ref)
	}
	in := &kms.DecryptInput{CiphertextBlob: w.Blob, EncryptionContext: encContext(b)}
	if w.Version != "" {
		in.KeyId = aws.String(w.Version)
	}
	out, err := m.api.Decrypt(ctx, in)
	if err != nil {
		return nil, classify("Decrypt", err)
	}
	return out.Plaintext, nil
}

// Rewrap implements keyring.Rewrapper with ReEncrypt: the DEK never
// leaves KMS.
func (m *MasterKey) Rewrap(ctx context.Context, b keyring.Binding, w keyring.Wrap) (keyring.Wrap, error) {
	in := &kms.ReEncryptInput{
		CiphertextBlob:               w.Blob,
		DestinationKeyId:             aws.String(m.keyID),
		SourceEncryptionContext:      encContext(b),
		DestinationEncryptionContext: encContext(b),
	}
	if w.Version != "" {
		in.SourceKeyId = aws.String(w.Version)
	}
	out, err := m.api.ReEncrypt(ctx, in)
	if err != nil {
		return keyring.Wrap{}, classify("ReEncrypt", err)
	}
	return keyring.Wrap{Ref: Ref, Version: aws.ToString(out.KeyId), Blob: out.CiphertextBlob}, nil
}

// Current implements keyring.MasterKey: w is current when it was wrapped
// by the key the configured id (or alias) resolves to now. KMS rotates a
// key's backing material itself; that needs no rewrap.
func (m *MasterKey) Current(ctx context.Context, w keyring.Wrap) (bool, error) {
	if w.Ref != Ref {
		return false, nil
	}
	a, err := m.resolve(ctx)
	if err != nil {
		return false, err
	}
	return w.Version == a, nil
}

func (m *MasterKey) resolve(ctx context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.arn != "" && time.Since(m.resolvedAt) < resolveTTL {
		return m.arn, nil
	}
	out, err := m.api.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(m.keyID)})
	if err != nil {
		return "", fmt.Errorf("awskms: DescribeKey %s: %w", m.keyID, err)
	}
	if out.KeyMetadata == nil || out.KeyMetadata.Arn == nil {
		return "", fmt.Errorf("awskms: DescribeKey %s: no key ARN in the answer", m.keyID)
	}
	m.arn, m.resolvedAt = *out.KeyMetadata.Arn, time.Now()
	return m.arn, nil
}

// ProbeOrgID is the org id in the encryption context of Probe's calls. It
// is no org's id; a key policy that restricts kms:EncryptionContext:org_id
// must allow it, or every probe reads as a revocation.
const ProbeOrgID = "edge-kms-probe"

// probeRefresh is how often Probe makes a new probe ciphertext when the
// configured key is an alias, so that it follows the alias to the key new
// data keys are generated under.
const probeRefresh = resolveTTL

// Probe implements keyring.Prober. It asks KMS to Decrypt a 32-byte
// ciphertext that it had KMS generate under the configured key on its
// first call (GenerateDataKey, plaintext discarded at once), with the same
// encryption-context shape as real data keys: one Decrypt per probe.
//
// Decrypt rather than DescribeKey, because Decrypt is exactly what a cold
// data key needs: DescribeKey reports KeyState (Enabled, Disabled,
// PendingDeletion) but stays allowed when a key policy, grant or IAM
// change removes only kms:Decrypt, and the serving edge may not even be
// granted kms:DescribeKey (it needs only GenerateDataKey and Decrypt, the
// two calls Probe makes). The ciphertext is decrypted by the ARN that
// made it; for an alias a new one is generated every minute so that the
// probe follows the alias to its current key.
//
// An error wraps keyring.ErrUnreadable only for answers that mean the key
// cannot be used by us: DisabledException, KMSInvalidStateException
// (pending deletion, pending import, custom key store disconnected),
// NotFoundException (key or alias deleted), AccessDeniedException (our
// access removed; local KMS also answers it for a disabled key) and
// InvalidKeyUsageException. Everything else is reported as transient and
// leaves the cached data keys alone: no answer (network, timeout),
// throttling and quotas, KMS faults (KMSInternalException,
// DependencyTimeoutException, KeyUnavailableException), credential trouble
// on our side (expired token, clock skew), and anything new.
func (m *MasterKey) Probe(ctx context.Context) error {
	m.probeMu.Lock()
	defer m.probeMu.Unlock()
	p := m.probe
	if p.blob == nil || (isAlias(m.keyID) && time.Since(p.at) >= probeRefresh) {
		out, err := m.api.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
			KeyId:             aws.String(m.keyID),
			KeySpec:           types.DataKeySpecAes256,
			EncryptionContext: m.probeContext(),
		})
		switch {
		case err == nil:
			clear(out.Plaintext)
			p = probeBlob{blob: out.CiphertextBlob, arn: aws.ToString(out.KeyId), at: time.Now()}
			m.probe = p
		case p.blob == nil || probeRefused(err):
			return probeError("GenerateDataKey", err)
		}
		// A transient failure to refresh: check the key we know.
	}
	in := &kms.DecryptInput{CiphertextBlob: p.blob, EncryptionContext: m.probeContext()}
	if p.arn != "" {
		in.KeyId = aws.String(p.arn)
	}
	out, err := m.api.Decrypt(ctx, in)
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && (ae.ErrorCode() == "InvalidCiphertextException" || ae.ErrorCode() == "IncorrectKeyException") {
			// Our own ciphertext rejected says nothing about the key
			// (KMS cannot lose it for an enabled key); make a new one next
			// time rather than call the key revoked.
			m.probe = probeBlob{}
		}
		return probeError("Decrypt", err)
	}
	n := len(out.Plaintext)
	clear(out.Plaintext)
	if n != keyring.DEKSize {
		m.probe = probeBlob{}
		return fmt.Errorf("awskms: probe: Decrypt returned %d bytes, want %d", n, keyring.DEKSize)
	}
	return nil
}

// probeContext is called with probeMu held.
func (m *MasterKey) probeContext() map[string]string {
	if m.probeOrg != "" {
		return map[string]string{ContextKey: m.probeOrg}
	}
	return map[string]string{ContextKey: ProbeOrgID}
}

func isAlias(keyID string) bool {
	return strings.HasPrefix(keyID, "alias/") || strings.Contains(keyID, ":alias/")
}

// refusals lists the KMS error codes that tell Probe the key is revoked
// for us; see Probe.
var refusals = map[string]bool{
	"DisabledException":        true,
	"KMSInvalidStateException": true,
	"NotFoundException":        true,
	"AccessDeniedException":    true,
	"InvalidKeyUsageException": true,
}

func probeRefused(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && refusals[ae.ErrorCode()]
}

// probeError wraps keyring.ErrUnreadable for a definitive refusal only.
func probeError(op string, err error) error {
	var ae smithy.APIError
	if probeRefused(err) && errors.As(err, &ae) {
		return fmt.Errorf("awskms: probe: %s: %w: %s: %s", op, keyring.ErrUnreadable, ae.ErrorCode(), ae.ErrorMessage())
	}
	return fmt.Errorf("awskms: probe: %s: %w", op, err)
}

// retryable lists KMS error codes that say "try again", not "no".
var retryable = map[string]bool{
	"ThrottlingException":        true,
	"KMSInternalException":       true,
	"DependencyTimeoutException": true,
	"LimitExceededException":     true,
	"RequestLimitExceeded":       true,
	"KeyUnavailableException":    true, // AWS: "You can retry the request."
}

// classify turns a KMS error into keyring vocabulary: an answer from KMS
// refusing the operation is ErrUnreadable; no answer (network, context,
// credentials), a throttle or a server fault is an infrastructure error.
func classify(op string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && !retryable[ae.ErrorCode()] && ae.ErrorFault() != smithy.FaultServer {
		return fmt.Errorf("awskms: %s: %w: %s: %s", op, keyring.ErrUnreadable, ae.ErrorCode(), ae.ErrorMessage())
	}
	return fmt.Errorf("awskms: %s: %w", op, err)
}

// ScheduleDeletion schedules the deletion of the KMS key after days (7 to
// 30, AWS's bounds), for `crypto shred --schedule-key-deletion` on an org
// with its own key: once deleted, no copy of what it wrapped, backups
// included, can be opened again. It returns when the deletion takes effect.
func (m *MasterKey) ScheduleDeletion(ctx context.Context, days int) (time.Time, error) {
	if days < 7 || days > 30 {
		return time.Time{}, fmt.Errorf("awskms: deletion window %d days: AWS KMS accepts 7 to 30", days)
	}
	out, err := m.api.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(m.keyID), PendingWindowInDays: aws.Int32(int32(days))})
	if err != nil {
		return time.Time{}, fmt.Errorf("awskms: schedule deletion of %s: %w", m.keyID, err)
	}
	return aws.ToTime(out.DeletionDate), nil
}
