package plain_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/soulpad/soulpad/plugins/crypt-plain/plain"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/crypt/crypttest"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

var allow = crypttest.Options{Config: []byte(`{"allow_no_encryption": true}`)}

func TestConformanceInProcess(t *testing.T) {
	c := sdktest.InProcess(t, plain.New(sdktest.Logger(t, "crypt-plain"))).(crypt.Crypt)
	crypttest.Run(t, c, allow)
}

func TestConformanceBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "crypt-plain")
	out, err := exec.Command("go", "build", "-o", bin, "..").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := sdktest.Binary(t, bin).(crypt.Crypt)
	crypttest.Run(t, c, allow)
}

func TestRefusedWithoutExplicitSwitch(t *testing.T) {
	c := sdktest.InProcess(t, plain.New(sdktest.Logger(t, "crypt-plain"))).(crypt.Crypt)
	ctx := context.Background()
	for _, cfg := range []string{``, `{}`, `{"allow_no_encryption": false}`} {
		if _, err := c.Configure(ctx, sdk.ConfigureRequest{Config: []byte(cfg)}); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("Configure(%q) = %v; want sdk.ErrInvalidConfig", cfg, err)
		}
	}
	vault := filepath.Join(t.TempDir(), "vault")
	if _, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault}); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Fatalf("Create without the switch = %v; want sdk.ErrInvalidConfig", err)
	}
	if _, err := os.Stat(vault); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused Create left %s behind", vault)
	}
	if _, err := c.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"allow_no_encrypt": true}`)}); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Fatalf("Configure with a misspelt key = %v; want sdk.ErrInvalidConfig", err)
	}
}
