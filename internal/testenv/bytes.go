package testenv

import "math/rand/v2"

// Incompressible returns n bytes that do not compress, the same for the
// same seed: the content of a large image layer whose transfer a test
// measures.
func Incompressible(seed string, n int) []byte {
	var s [32]byte
	copy(s[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}
