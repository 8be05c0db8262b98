package testplugins_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testplugins/copybackup"
	"github.com/soulpad/soulpad/internal/testplugins/counter"
	"github.com/soulpad/soulpad/internal/testplugins/static"
	"github.com/soulpad/soulpad/sdk/backup"
	"github.com/soulpad/soulpad/sdk/backup/backuptest"
	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/detect/detecttest"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/vmmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

var counterOpts = vmmtest.Options{
	Config: []byte(`{"tick_ms": 2}`),
	Spec: func(t *testing.T, dir string) vmm.Spec {
		return vmm.Spec{Name: "t", MemoryMiB: 64, VCPUs: 1, CPUModel: "portable", Accelerator: "tcg"}
	},
	PowerOffSpec: func(t *testing.T, dir string) vmm.Spec {
		return vmm.Spec{Name: "t", MemoryMiB: 64, VCPUs: 1, CPUModel: "portable", Accelerator: "tcg",
			Extra: map[string]string{"power_off_after_ms": "100"}}
	},
	Progress: counterProgress,
}

// counterProgress reads the counter from Status ("counter=N").
func counterProgress(ctx context.Context, v vmm.VMM, m vmmtest.Machine) (uint64, bool) {
	st, err := v.Status(ctx, vmm.StatusRequest{Name: m.Spec.Name})
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(st.Detail, "counter="), 10, 64)
	return n, err == nil
}

func TestCounterConformance(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) {
		vmmtest.Run(t, sdktest.InProcess(t, counter.New()).(vmm.VMM), counterOpts)
	})
	t.Run("Binary", func(t *testing.T) {
		vmmtest.Run(t, sdktest.Binary(t, testbin.Build(t, "internal/testplugins/vmm-counter")).(vmm.VMM), counterOpts)
	})
}

func TestStaticConformance(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) {
		detecttest.Run(t, sdktest.InProcess(t, static.New()).(detect.Detect), detecttest.Options{})
	})
	t.Run("Binary", func(t *testing.T) {
		detecttest.Run(t, sdktest.Binary(t, testbin.Build(t, "internal/testplugins/detect-static")).(detect.Detect), detecttest.Options{})
	})
}

func copyConfig(t *testing.T) []byte {
	b, _ := json.Marshal(map[string]string{"target": filepath.Join(t.TempDir(), "target")})
	return b
}

func TestCopyBackupConformance(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) {
		backuptest.Run(t, sdktest.InProcess(t, copybackup.New()).(backup.Backup), backuptest.Options{Config: copyConfig(t)})
	})
	t.Run("Binary", func(t *testing.T) {
		backuptest.Run(t, sdktest.Binary(t, testbin.Build(t, "internal/testplugins/backup-copy")).(backup.Backup), backuptest.Options{Config: copyConfig(t)})
	})
}
