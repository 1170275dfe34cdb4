//go:build localkms

// These tests run against a real local KMS (github.com/nsmithuk/local-kms)
// and are built only with -tags localkms, which scripts/local-kms.sh test
// sets after starting the server in a private network namespace. With the
// tag, CODEX_TEST_KMS_ENDPOINT must name a reachable server: the tests fail,
// never skip, when it does not.

package awskms_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/controlplane/sealer/awskms"
)

func localKMS(t *testing.T) *kms.Client {
	t.Helper()
	ep := os.Getenv("CODEX_TEST_KMS_ENDPOINT")
	if ep == "" {
		t.Fatal("CODEX_TEST_KMS_ENDPOINT is not set; run these tests with scripts/local-kms.sh test")
	}
	u, err := url.Parse(ep)
	if err != nil {
		t.Fatalf("CODEX_TEST_KMS_ENDPOINT: %v", err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		t.Fatalf("local KMS expected at %s but unreachable: %v", ep, err)
	}
	conn.Close()
	t.Setenv("AWS_ENDPOINT_URL_KMS", ep)
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDLOCALKMS")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local-kms-accepts-anything")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return kms.NewFromConfig(cfg)
}

func createKey(t *testing.T, admin *kms.Client) string {
	t.Helper()
	out, err := admin.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String(t.Name())})
	if err != nil {
		t.Fatalf("create KMS key: %v", err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

// Records sealed under a KMS key open under it, only as the record they
// were sealed as, and not under another key or once the key is disabled.
func TestLocalKMSSealer(t *testing.T) {
	ctx := context.Background()
	admin := localKMS(t)
	arn := createKey(t, admin)
	kp, err := awskms.Open(ctx, arn)
	if err != nil {
		t.Fatal(err)
	}
	s := sealer.New(kp)
	b := sealer.Binding{Purpose: "nats-seed", Name: "operator"}
	sealed, err := s.Seal(ctx, b, []byte("the seed"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Open(ctx, b, sealed); err != nil || string(got) != "the seed" {
		t.Fatalf("open = %q, %v", got, err)
	}
	if _, err := s.Open(ctx, sealer.Binding{Purpose: "nats-seed", Name: "system"}, sealed); !errors.Is(err, sealer.ErrUnreadable) {
		t.Fatalf("opened as another record: %v", err)
	}
	other, err := awskms.Open(ctx, createKey(t, admin))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sealer.New(other).Open(ctx, b, sealed); !errors.Is(err, sealer.ErrUnreadable) {
		t.Fatalf("opened under another KMS key: %v", err)
	}
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, b, sealed); !errors.Is(err, sealer.ErrUnreadable) {
		t.Fatalf("opened with the key disabled: %v", err)
	}
}
