// Package awskms is the control plane's sealer.KeyProvider in AWS KMS:
// each record's data key is wrapped with KMS Encrypt and unwrapped with
// Decrypt under the encryption context {"purpose": …, "record": …}, so a
// wrapped key cannot be replayed for another record, and CloudTrail shows
// which record each call served. It is the same design as the edge's
// keyring (edge/keyring/awskms): the plaintext data key never leaves the
// control plane's memory, and revoking the control plane's access to the
// KMS key makes the sealed records unreadable.
//
// Open builds the client from the standard AWS configuration chain
// (environment, shared config, IAM role); AWS_ENDPOINT_URL_KMS points it at
// another endpoint, such as a local KMS in tests. The control plane's role
// needs kms:Encrypt and kms:Decrypt on the key.
package awskms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/persiv/codex/controlplane/sealer"
)

// Ref is the provider's reference in sealed records.
const Ref = "awskms"

// Encryption context keys.
const (
	ContextPurpose = "purpose"
	ContextRecord  = "record"
)

// API is the part of *kms.Client this package uses.
type API interface {
	Encrypt(ctx context.Context, in *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

var _ API = (*kms.Client)(nil)

// KeyProvider implements sealer.KeyProvider with one KMS key (id, ARN,
// alias name or alias ARN).
type KeyProvider struct {
	api   API
	keyID string
}

var _ sealer.KeyProvider = (*KeyProvider)(nil)

// New returns a KeyProvider using api and the KMS key keyID.
func New(api API, keyID string) (*KeyProvider, error) {
	if err := ValidKeyID(keyID); err != nil {
		return nil, err
	}
	return &KeyProvider{api: api, keyID: keyID}, nil
}

// Open builds a KMS client from the default AWS configuration chain and
// returns a KeyProvider for keyID. When no region is configured and keyID
// is an ARN, the ARN's region is used. It makes no KMS call.
func Open(ctx context.Context, keyID string, optFns ...func(*config.LoadOptions) error) (*KeyProvider, error) {
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
		return errors.New("awskms: empty key id")
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

// Ref implements sealer.KeyProvider.
func (*KeyProvider) Ref() string { return Ref }

// LogValue shows the key id; KMS key ids are not secret.
func (p *KeyProvider) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ref", Ref), slog.String("key_id", p.keyID))
}

func encContext(b sealer.Binding) map[string]string {
	return map[string]string{ContextPurpose: b.Purpose, ContextRecord: b.Name}
}

// Wrap implements sealer.KeyProvider with KMS Encrypt.
func (p *KeyProvider) Wrap(ctx context.Context, b sealer.Binding, dataKey []byte) ([]byte, error) {
	out, err := p.api.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(p.keyID), Plaintext: dataKey, EncryptionContext: encContext(b)})
	if err != nil {
		return nil, classify("Encrypt", err)
	}
	return out.CiphertextBlob, nil
}

// Unwrap implements sealer.KeyProvider with KMS Decrypt, naming the
// configured key, so a data key wrapped by any other key is refused.
func (p *KeyProvider) Unwrap(ctx context.Context, b sealer.Binding, wrapped []byte) ([]byte, error) {
	out, err := p.api.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(p.keyID), CiphertextBlob: wrapped, EncryptionContext: encContext(b)})
	if err != nil {
		return nil, classify("Decrypt", err)
	}
	return out.Plaintext, nil
}

// retryable lists KMS error codes that say "try again", not "no".
var retryable = map[string]bool{
	"ThrottlingException":        true,
	"KMSInternalException":       true,
	"DependencyTimeoutException": true,
	"LimitExceededException":     true,
	"RequestLimitExceeded":       true,
	"KeyUnavailableException":    true,
}

// classify wraps sealer.ErrUnreadable when KMS answered with a refusal
// (a ciphertext not ours, a wrong context, a disabled key, access
// denied); no answer, a throttle or a server fault stays a plain error.
func classify(op string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && !retryable[ae.ErrorCode()] && ae.ErrorFault() != smithy.FaultServer {
		return fmt.Errorf("awskms: %s: %w: %s: %s", op, sealer.ErrUnreadable, ae.ErrorCode(), ae.ErrorMessage())
	}
	return fmt.Errorf("awskms: %s: %w", op, err)
}
