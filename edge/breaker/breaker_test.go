package breaker

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	var b Breaker
	if !b.Use() || b.OK() {
		t.Fatal("a new breaker is not up")
	}
	if !b.Fail(time.Hour) {
		t.Fatal("the first failure did not report the switch")
	}
	if b.Fail(time.Hour) {
		t.Fatal("a second failure reported the switch again")
	}
	if b.Use() {
		t.Fatal("used during its cooldown")
	}
	if !b.OK() || !b.Use() {
		t.Fatal("a success did not bring it back")
	}
	if b.OK() {
		t.Fatal("a second success reported the switch again")
	}
	b.Fail(time.Nanosecond)
	time.Sleep(time.Millisecond)
	if !b.Use() {
		t.Fatal("not tried again after its cooldown")
	}
}
