//go:build goexperiment.runtimesecret

package luks

import rtsecret "runtime/secret"

// secretDo runs f so that the registers, stack and heap it used are
// erased once unreachable (runtime/secret).
func secretDo(f func()) { rtsecret.Do(f) }

// erasing says whether secretDo erases.
const erasing = true
