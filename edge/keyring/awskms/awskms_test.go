package awskms_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
)

// refusing answers every call with one error, the way KMS answers a
// request it will not serve.
type refusing struct {
	awskms.API
	err error
}

func (r refusing) Decrypt(context.Context, *kms.DecryptInput, ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	return nil, r.err
}

func (r refusing) GenerateDataKey(context.Context, *kms.GenerateDataKeyInput, ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error) {
	return nil, r.err
}

// The classification callers rely on: any refusal KMS answers with is
// unreadable; no answer, a throttle or a KMS fault is not.
func TestErrorClassification(t *testing.T) {
	tests := []struct {
		err        error
		unreadable bool
	}{
		{&smithy.GenericAPIError{Code: "AccessDeniedException", Fault: smithy.FaultClient}, true},
		{&smithy.GenericAPIError{Code: "DisabledException", Fault: smithy.FaultClient}, true},
		{&smithy.GenericAPIError{Code: "KMSInvalidStateException", Fault: smithy.FaultClient}, true},
		{&smithy.GenericAPIError{Code: "InvalidCiphertextException", Fault: smithy.FaultClient}, true},
		{&smithy.GenericAPIError{Code: "IncorrectKeyException", Fault: smithy.FaultClient}, true},
		{&smithy.GenericAPIError{Code: "NotFoundException", Fault: smithy.FaultClient}, true},
		{&smithy.GenericAPIError{Code: "SomethingNew", Fault: smithy.FaultUnknown}, true},
		{&smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient}, false},
		{&smithy.GenericAPIError{Code: "KMSInternalException", Fault: smithy.FaultServer}, false},
		{&smithy.GenericAPIError{Code: "DependencyTimeoutException", Fault: smithy.FaultServer}, false},
		{&smithy.GenericAPIError{Code: "Whatever", Fault: smithy.FaultServer}, false},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), false},
		{context.DeadlineExceeded, false},
	}
	ctx := context.Background()
	b := keyring.Binding{OrgID: "org_a"}
	w := keyring.Wrap{Ref: awskms.Ref, Version: "arn:aws:kms:eu-west-2:111122223333:key/k", Blob: []byte{1}}
	for _, tt := range tests {
		m, err := awskms.New(refusing{err: tt.err}, "alias/x")
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Unwrap(ctx, b, w)
		if got := errors.Is(err, keyring.ErrUnreadable); got != tt.unreadable || err == nil {
			t.Errorf("Unwrap with %v: %v (unreadable %v, want %v)", tt.err, err, got, tt.unreadable)
		}
		_, _, err = m.Generate(ctx, b)
		if got := errors.Is(err, keyring.ErrUnreadable); got != tt.unreadable {
			t.Errorf("Generate with %v: %v (unreadable %v, want %v)", tt.err, err, got, tt.unreadable)
		}
	}
	m, _ := awskms.New(refusing{}, "alias/x")
	if _, err := m.Unwrap(ctx, b, keyring.Wrap{Ref: "byok"}); !errors.Is(err, keyring.ErrUnreadable) {
		t.Errorf("Unwrap of another provider's wrap: %v", err)
	}
}

func TestValidKeyID(t *testing.T) {
	for _, ok := range []string{
		"1234abcd-12ab-34cd-56ef-1234567890ab",
		"mrk-1234abcd12ab34cd56ef1234567890ab",
		"alias/codex",
		"arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"arn:aws:kms:eu-west-2:111122223333:alias/codex",
	} {
		if err := awskms.ValidKeyID(ok); err != nil {
			t.Errorf("ValidKeyID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "alias/a b", "arn:aws:s3:::bucket", "arn:nope", "k\x00", "ключ", strings.Repeat("k", 2049)} {
		if err := awskms.ValidKeyID(bad); err == nil {
			t.Errorf("ValidKeyID(%q) accepted", bad)
		}
	}
}

// Open takes the region from a key ARN when none is configured, and makes
// no KMS call (start-up must not depend on KMS).
func TestOpenOffline(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1")
	ctx := context.Background()
	if _, err := awskms.Open(ctx, "alias/codex"); err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("alias without region: %v", err)
	}
	m, err := awskms.Open(ctx, "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	if err != nil || m.Ref() != awskms.Ref {
		t.Fatalf("ARN without region: %v", err)
	}
}
