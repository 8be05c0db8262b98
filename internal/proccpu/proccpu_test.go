package proccpu

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestTreeCountsChildren(t *testing.T) {
	// A child that spins for a while: the tree's time grows by its time.
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	before := Tree(os.Getpid())
	deadline := time.Now().Add(30 * time.Second)
	for Seconds(cmd.Process.Pid, false) < 0.2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	child := Seconds(cmd.Process.Pid, false)
	if child < 0.2 {
		t.Skipf("the child used only %.2f CPU-s in 30 s", child)
	}
	if after := Tree(os.Getpid()); after-before < child-0.1 {
		t.Fatalf("the tree used %.2f CPU-s more, its child alone %.2f", after-before, child)
	}
	if Seconds(1<<22+1, true) != 0 {
		t.Fatal("a process that does not exist used CPU")
	}
}
