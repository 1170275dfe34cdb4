package main

import (
	"os"
	"testing"
	"time"
)

func TestProcCPU(t *testing.T) {
	// Spin until procCPU counts 100ms of CPU time (a busy machine gives
	// a spinning thread less than the wall time), failing after 10s.
	before := procCPU(os.Getpid())
	for start := time.Now(); procCPU(os.Getpid())-before < 100*time.Millisecond; {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("10s of spinning counted as %s of CPU time", procCPU(os.Getpid())-before)
		}
	}
	if procCPU(0) != 0 || procCPU(1<<30) != 0 {
		t.Error("no process, yet CPU time")
	}
}
