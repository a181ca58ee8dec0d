package render

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// swapIn puts the folder tmp in place of dir and returns where the old
// folder now is ("" when there was none). On Linux one renameat2 call with
// RENAME_EXCHANGE swaps both names at once, so there is no moment without
// a folder at dir; file systems without it fall back to two renames.
func swapIn(tmp, dir string, exists bool) (string, error) {
	if !exists {
		return "", os.Rename(tmp, dir)
	}
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE)
	if err == nil {
		return tmp, nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) {
		return "", &os.LinkError{Op: "renameat2", Old: tmp, New: dir, Err: err}
	}
	return swapAside(tmp, dir)
}
