package render

// Hooks for the black-box tests in package render_test.

// SetTestHookBeforeSwap sets the hook run just before the new folder is
// swapped in, and returns a func that unsets it.
func SetTestHookBeforeSwap(f func() error) func() {
	testHookBeforeSwap = f
	return func() { testHookBeforeSwap = nil }
}

// SetTestHookWriteFile sets the hook run before each file is written.
func SetTestHookWriteFile(f func(path string) error) func() {
	testHookWriteFile = f
	return func() { testHookWriteFile = nil }
}

// SetTestHookRendered sets the hook that may change a rendered compose file
// before it is validated.
func SetTestHookRendered(f func(path string, data []byte) []byte) func() {
	testHookRendered = f
	return func() { testHookRendered = nil }
}

// SetTestHookValidated sets the hook called with the path of every compose
// file validated.
func SetTestHookValidated(f func(path string)) func() {
	testHookValidated = f
	return func() { testHookValidated = nil }
}
