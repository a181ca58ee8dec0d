//go:build !unix

package render

// lock is a no-op where flock does not exist.
func lock(string) (func(), error) { return func() {}, nil }
