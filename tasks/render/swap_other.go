//go:build !linux

package render

import "os"

// swapIn puts the folder tmp in place of dir and returns where the old
// folder now is ("" when there was none).
func swapIn(tmp, dir string, exists bool) (string, error) {
	if !exists {
		return "", os.Rename(tmp, dir)
	}
	return swapAside(tmp, dir)
}
