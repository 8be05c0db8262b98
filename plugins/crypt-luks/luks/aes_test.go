package luks

import (
	"crypto/aes"
	"crypto/cipher"
)

func aesNew(k []byte) (cipher.Block, error) { return aes.NewCipher(k) }
