// Package walkup_test runs soulpad end to end as a user and a fault
// injector would: real QEMU guests (and libvirt), real vaults, kill -9 at
// chosen moments, backups and restores. It is its own package so that
// these long tests have their own time budget.
package walkup_test

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testlibvirt"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("walkup: the end-to-end tests are skipped with -short")
		os.Exit(0)
	}
	code := m.Run()
	testbin.Cleanup()
	testlibvirt.Stop()
	os.Exit(code)
}
