//go:build unix

package ui

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// termSize is the size of the terminal w writes to: 80x24 when it cannot
// be asked (not a terminal, or the ioctl fails). It is asked at every
// redraw, so a resized window is followed.
func termSize(w io.Writer) (cols, rows int) {
	cols, rows = 80, 24
	f, ok := w.(*os.File)
	if !ok {
		return
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return
	}
	if ws.Col > 0 {
		cols = int(ws.Col)
	}
	if ws.Row > 0 {
		rows = int(ws.Row)
	}
	return
}
