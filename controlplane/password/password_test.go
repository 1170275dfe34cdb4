package password

import (
	"errors"
	"strings"
	"testing"
)

func TestHashVerify(t *testing.T) {
	t.Parallel()
	h, err := Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash %q", h)
	}
	if err := Verify("correct horse battery staple", h); err != nil {
		t.Fatal(err)
	}
	if err := Verify("correct horse battery stapler", h); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	h2, _ := Hash("correct horse battery staple")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, bad := range []string{"", "$2a$10$abc", "$argon2id$v=19$m=x$a$b", strings.Replace(h, "m=65536", "m=99999999", 1)} {
		if err := Verify("x", bad); err == nil || errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%q) = %v", bad, err)
		}
	}
	if _, err := Hash("short"); err == nil {
		t.Fatal("short password accepted")
	}
}
