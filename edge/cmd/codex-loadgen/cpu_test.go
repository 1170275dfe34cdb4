package main

import (
	"os"
	"testing"
	"time"
)

func TestProcCPU(t *testing.T) {
	before := procCPU(os.Getpid())
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
	}
	if got := procCPU(os.Getpid()) - before; got < 100*time.Millisecond {
		t.Errorf("300ms of spinning counted as %s of CPU time", got)
	}
	if procCPU(0) != 0 || procCPU(1<<30) != 0 {
		t.Error("no process, yet CPU time")
	}
}
