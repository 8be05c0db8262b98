package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

// failing is a crypt plugin whose Unlock fails with a chosen error.
type failing struct{ err error }

func (f *failing) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "failing", Kind: sdk.KindCrypt, APIVersions: []int{crypt.APIVersion}}, nil
}
func (f *failing) Configure(context.Context, sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	return sdk.ConfigureResponse{}, nil
}
func (f *failing) Create(context.Context, crypt.CreateRequest) (crypt.CreateResponse, error) {
	return crypt.CreateResponse{}, nil
}
func (f *failing) Unlock(context.Context, crypt.UnlockRequest) (crypt.UnlockResponse, error) {
	return crypt.UnlockResponse{}, f.err
}
func (f *failing) Lock(context.Context, crypt.LockRequest) (crypt.LockResponse, error) {
	return crypt.LockResponse{}, nil
}

func TestSentinelsSurviveTheRPC(t *testing.T) {
	for _, s := range sdk.Sentinels {
		t.Run(s.Reason, func(t *testing.T) {
			impl := &failing{err: fmt.Errorf("failing: unlock pad/vault: %w", s.Err)}
			c := sdktest.InProcess(t, impl).(crypt.Crypt)
			_, err := c.Unlock(context.Background(), crypt.UnlockRequest{VaultPath: "pad/vault"})
			if !errors.Is(err, s.Err) {
				t.Fatalf("errors.Is(%v, %v) = false after the RPC", err, s.Err)
			}
			if err.Error() != impl.err.Error() {
				t.Fatalf("message = %q; want the plugin's %q", err, impl.err)
			}
			for _, other := range sdk.Sentinels {
				if other.Err != s.Err && errors.Is(err, other.Err) {
					t.Fatalf("%v also matches %v", err, other.Err)
				}
			}
		})
	}
}

func TestPlainErrorHasNoSentinel(t *testing.T) {
	c := sdktest.InProcess(t, &failing{err: errors.New("disk on fire")}).(crypt.Crypt)
	_, err := c.Unlock(context.Background(), crypt.UnlockRequest{})
	if err == nil || err.Error() != "disk on fire" {
		t.Fatalf("err = %v; want the plugin's message", err)
	}
	for _, s := range sdk.Sentinels {
		if errors.Is(err, s.Err) {
			t.Fatalf("a plain error matches %v", s.Err)
		}
	}
}

func TestOptionalMethodMissingIsUnsupported(t *testing.T) {
	c := sdktest.InProcess(t, &failing{}).(crypt.CredentialManager)
	_, err := c.AddCredential(context.Background(), crypt.AddCredentialRequest{})
	if !errors.Is(err, sdk.ErrUnsupported) {
		t.Fatalf("AddCredential on a plugin without it = %v; want sdk.ErrUnsupported", err)
	}
}
