package awskms_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
)

const probeARN = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// probeAPI answers Probe's two calls the way KMS does, or with decErr
// (genErr) when set, and records what it was asked.
type probeAPI struct {
	awskms.API // nil: any other call panics
	genErr     error
	decErr     error
	gens, decs atomic.Int64
	lastDecKey string
	lastCtx    map[string]string
}

var probeBlob = []byte("probe-ciphertext")

func (a *probeAPI) GenerateDataKey(_ context.Context, in *kms.GenerateDataKeyInput, _ ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error) {
	a.gens.Add(1)
	if a.genErr != nil {
		return nil, a.genErr
	}
	return &kms.GenerateDataKeyOutput{KeyId: aws.String(probeARN), Plaintext: bytes.Repeat([]byte{7}, 32), CiphertextBlob: probeBlob}, nil
}

func (a *probeAPI) Decrypt(_ context.Context, in *kms.DecryptInput, _ ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	a.decs.Add(1)
	a.lastDecKey, a.lastCtx = aws.ToString(in.KeyId), in.EncryptionContext
	if a.decErr != nil {
		return nil, a.decErr
	}
	if !bytes.Equal(in.CiphertextBlob, probeBlob) {
		return nil, &smithy.GenericAPIError{Code: "InvalidCiphertextException", Fault: smithy.FaultClient}
	}
	return &kms.DecryptOutput{KeyId: aws.String(probeARN), Plaintext: bytes.Repeat([]byte{7}, 32)}, nil
}

// One GenerateDataKey on the first probe, then one Decrypt per probe, by
// the key's ARN and under the probe's encryption context.
func TestProbeCalls(t *testing.T) {
	api := &probeAPI{}
	m, err := awskms.New(api, "1234abcd-12ab-34cd-56ef-1234567890ab")
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := m.Probe(context.Background()); err != nil {
			t.Fatalf("probe: %v", err)
		}
	}
	if g, d := api.gens.Load(), api.decs.Load(); g != 1 || d != 5 {
		t.Errorf("5 probes made %d GenerateDataKey and %d Decrypt calls, want 1 and 5", g, d)
	}
	if api.lastDecKey != probeARN || api.lastCtx[awskms.ContextKey] != awskms.ProbeOrgID || len(api.lastCtx) != 1 {
		t.Errorf("Decrypt by %q with context %v", api.lastDecKey, api.lastCtx)
	}
}

// Which KMS answers read as a revocation (ErrUnreadable) and which as
// transient trouble.
func TestProbeClassification(t *testing.T) {
	apiErr := func(code string, f smithy.ErrorFault) error {
		return &smithy.GenericAPIError{Code: code, Message: "m", Fault: f}
	}
	tests := []struct {
		err     error
		revoked bool
	}{
		{apiErr("DisabledException", smithy.FaultClient), true},
		{apiErr("KMSInvalidStateException", smithy.FaultClient), true},
		{apiErr("NotFoundException", smithy.FaultClient), true},
		{apiErr("AccessDeniedException", smithy.FaultClient), true},
		{apiErr("InvalidKeyUsageException", smithy.FaultClient), true},
		{apiErr("KeyUnavailableException", smithy.FaultServer), false},
		{apiErr("ThrottlingException", smithy.FaultClient), false},
		{apiErr("LimitExceededException", smithy.FaultClient), false},
		{apiErr("KMSInternalException", smithy.FaultServer), false},
		{apiErr("DependencyTimeoutException", smithy.FaultServer), false},
		{apiErr("ExpiredTokenException", smithy.FaultClient), false},
		{apiErr("UnrecognizedClientException", smithy.FaultClient), false},
		{apiErr("InvalidCiphertextException", smithy.FaultClient), false},
		{apiErr("SomethingNew", smithy.FaultUnknown), false},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), false},
		{context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		// Refused by Decrypt, with a probe ciphertext already made.
		api := &probeAPI{}
		m, _ := awskms.New(api, probeARN)
		if err := m.Probe(context.Background()); err != nil {
			t.Fatal(err)
		}
		api.decErr = tt.err
		err := m.Probe(context.Background())
		if err == nil || errors.Is(err, keyring.ErrUnreadable) != tt.revoked {
			t.Errorf("Decrypt answering %v: probe = %v, want revoked %v", tt.err, err, tt.revoked)
		}
		// Refused by GenerateDataKey on the first probe.
		api = &probeAPI{genErr: tt.err}
		m, _ = awskms.New(api, probeARN)
		err = m.Probe(context.Background())
		if err == nil || errors.Is(err, keyring.ErrUnreadable) != tt.revoked {
			t.Errorf("GenerateDataKey answering %v: probe = %v, want revoked %v", tt.err, err, tt.revoked)
		}
		if api.decs.Load() != 0 {
			t.Errorf("GenerateDataKey answering %v: Decrypt called without a probe ciphertext", tt.err)
		}
	}
}

// A rejected probe ciphertext is not a revocation: the next probe makes a
// new one.
func TestProbeNewCiphertextAfterRejection(t *testing.T) {
	api := &probeAPI{}
	m, _ := awskms.New(api, probeARN)
	ctx := context.Background()
	if err := m.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	api.decErr = &smithy.GenericAPIError{Code: "IncorrectKeyException", Fault: smithy.FaultClient}
	if err := m.Probe(ctx); err == nil || errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("probe with its ciphertext rejected = %v, want a transient error", err)
	}
	api.decErr = nil
	if err := m.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	if g := api.gens.Load(); g != 2 {
		t.Errorf("%d GenerateDataKey calls, want 2 (a new probe ciphertext)", g)
	}
}
