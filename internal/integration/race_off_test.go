//go:build !race

package integration

// raceBuild is true when the tests run under the race detector: the
// binaries they start as child processes are then built with it too.
const raceBuild = false
