package awskms_test

import (
	"testing"

	"github.com/persiv/codex/controlplane/sealer/awskms"
)

func TestValidKeyID(t *testing.T) {
	for id, ok := range map[string]bool{
		"1234abcd-12ab-34cd-56ef-1234567890ab":                                        true,
		"alias/codex-controlplane":                                                    true,
		"arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab": true,
		"arn:aws:s3:::bucket":                                                         false,
		"":                                                                            false,
		"alias/with space":                                                            false,
	} {
		if err := awskms.ValidKeyID(id); (err == nil) != ok {
			t.Errorf("ValidKeyID(%q) = %v", id, err)
		}
	}
}
