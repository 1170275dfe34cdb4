// Package kmstest connects tests to the local KMS that scripts/local-kms.sh
// test starts (tests built with -tags localkms).
package kmstest

import (
	"context"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// Local points the standard AWS variables at the local KMS named by
// CODEX_TEST_KMS_ENDPOINT and returns an admin client for creating and
// disabling keys. It fails the test, never skips it, when the server is
// not there.
func Local(t *testing.T) *kms.Client {
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

// CreateKey creates a symmetric key named for the test and returns its ARN.
func CreateKey(t *testing.T, admin *kms.Client) string {
	t.Helper()
	out, err := admin.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String(t.Name())})
	if err != nil {
		t.Fatalf("create KMS key: %v", err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}
