// Package greet is imported by module path, so a test of EnsureGoImage
// shows that the module layout and go.mod work.
package greet

import "runtime"

// Message is what the hello program prints.
func Message() string { return "hello from " + runtime.GOOS + "/" + runtime.GOARCH }
