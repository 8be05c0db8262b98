package luks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"unsafe"

	luksgo "github.com/anatol/luks.go"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/secmem"
)

// unsealed is an opened LUKS volume: where the payload is and its key.
type unsealed struct {
	vol *luksgo.Volume
	key []byte
}

func (u *unsealed) wipe() {
	secmem.Free(u.key)
	u.key = nil
	if u.vol != nil {
		clear(volumeKeyInPlace(u.vol)) // luks.go never clears its copy
		u.vol = nil
	}
	collect()
}

// unseal opens the LUKS header at path and recovers the volume key with
// secret (a passphrase, or a key file's bytes), trying every key slot.
// luks.go leaves copies of the key on the heap that no caller can reach
// (its digest check converts the key to a string): the work runs under
// secretDo, which erases them once they are garbage, and the caller
// collects garbage after wiping what it kept (collect).
func unseal(path string, secret []byte) (u *unsealed, err error) {
	secretDo(func() { u, err = unsealIn(path, secret) })
	return u, err
}

// collect runs the garbage collector twice, so that what secretDo's work
// left behind is found unreachable and erased.
func collect() {
	runtime.GC()
	runtime.GC()
}

func unsealIn(path string, secret []byte) (*unsealed, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("crypt-luks: %s: %w", path, sdk.ErrNotFound)
	}
	if err := checkKDFLimits(path); err != nil {
		return nil, err
	}
	dev, err := luksgo.Open(path)
	if err != nil {
		return nil, fmt.Errorf("crypt-luks: %s: not a readable LUKS header (%v): %w", path, err, sdk.ErrCorrupt)
	}
	defer dev.Close()
	if dev.Version() != 2 {
		return nil, fmt.Errorf("crypt-luks: %s is LUKS%d; this plugin opens LUKS2: %w", path, dev.Version(), sdk.ErrCorrupt)
	}
	var lastErr error
	for _, slot := range dev.Slots() {
		vol, err := dev.UnsealVolume(slot, secret)
		if errors.Is(err, luksgo.ErrPassphraseDoesNotMatch) {
			continue
		}
		if err != nil {
			lastErr = err
			continue
		}
		if vol.StorageEncryption != "aes-xts-plain64" {
			return nil, fmt.Errorf("crypt-luks: %s uses %s; this plugin reads aes-xts-plain64: %w", path, vol.StorageEncryption, sdk.ErrIncompatibleHost)
		}
		key, err := volumeKey(vol)
		if err != nil {
			clear(volumeKeyInPlace(vol))
			return nil, fmt.Errorf("crypt-luks: %w", err)
		}
		return &unsealed{vol: vol, key: key}, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("crypt-luks: %s: %v: %w", path, lastErr, sdk.ErrCorrupt)
	}
	return nil, fmt.Errorf("crypt-luks: unlock %s: %w", path, sdk.ErrWrongPassphrase)
}

// volumeKey copies the volume key out of luks.go's Volume into locked
// memory (sdk/secmem). luks.go keeps it
// unexported and hands it only to its kernel device-mapper path; the
// userspace engine needs it to serve the payload itself. The module
// version is pinned in go.mod, and TestUserspaceMatchesCryptsetup checks
// the result against cryptsetup's own decryption.
func volumeKey(v *luksgo.Volume) ([]byte, error) {
	in := volumeKeyInPlace(v)
	k, err := secmem.Alloc(len(in))
	if err != nil {
		return nil, err
	}
	copy(k, in)
	return k, nil
}

// volumeKeyInPlace is luks.go's own key slice (to wipe it).
func volumeKeyInPlace(v *luksgo.Volume) []byte {
	f := reflect.ValueOf(v).Elem().FieldByName("key")
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Bytes()
}
