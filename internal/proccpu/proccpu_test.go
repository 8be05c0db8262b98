package proccpu

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
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

func TestDescendantsFindsGrandchildren(t *testing.T) {
	// sh runs sleep as a child of its own: a grandchild of this process.
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var sleep int
	if _, err := fmt.Fscan(out, &sleep); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(sleep, syscall.SIGKILL)
	d := Descendants(os.Getpid())
	if !slices.Contains(d, cmd.Process.Pid) || !slices.Contains(d, sleep) {
		t.Fatalf("descendants %v lack the child %d or the grandchild %d", d, cmd.Process.Pid, sleep)
	}
	if slices.Contains(d, os.Getpid()) || slices.Contains(Descendants(sleep), cmd.Process.Pid) {
		t.Fatalf("descendants hold the process itself or its parent: %v", d)
	}
}
