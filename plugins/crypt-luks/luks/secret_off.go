//go:build !goexperiment.runtimesecret

package luks

// secretDo runs f. Built without GOEXPERIMENT=runtimesecret, what f leaves
// on the heap (luks.go's internal copies of the key) is not erased.
func secretDo(f func()) { f() }

// erasing says whether secretDo erases.
const erasing = false
