package uitest

import (
	"fmt"
	"strconv"
	"strings"
)

// Screen plays terminal output on a screen of the given width with no
// height limit, as a terminal with onlcr (the default) shows it, and
// returns its lines without colours and trailing blanks. It understands
// what a ui.Printer sends (SGR colours, cursor up, clear to the end of the
// screen) and returns an error on any other escape sequence, on a cursor
// moved above the screen and on a line that would wrap: each would leave
// a real terminal showing something else than meant.
func Screen(out string, width int) ([]string, error) {
	var lines [][]rune
	row, col := 0, 0
	grow := func() {
		for len(lines) <= row {
			lines = append(lines, nil)
		}
	}
	rs := []rune(out)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; {
		case r == '\r':
			col = 0
		case r == '\n':
			row, col = row+1, 0
		case r == '\x1b':
			if i+1 >= len(rs) || rs[i+1] != '[' {
				return nil, fmt.Errorf("escape sequence %q", string(rs[i:min(i+6, len(rs))]))
			}
			j := i + 2
			for j < len(rs) && (rs[j] >= '0' && rs[j] <= '9' || rs[j] == ';') {
				j++
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("unterminated escape sequence %q", string(rs[i:]))
			}
			param := string(rs[i+2 : j])
			switch rs[j] {
			case 'm':
			case 'A':
				n, _ := strconv.Atoi(param)
				if row -= max(n, 1); row < 0 {
					return nil, fmt.Errorf("cursor moved above the screen")
				}
			case 'J':
				if param != "" && param != "0" {
					return nil, fmt.Errorf("clear %q", param)
				}
				grow()
				if col < len(lines[row]) {
					lines[row] = lines[row][:col]
				}
				lines = lines[:row+1]
			default:
				return nil, fmt.Errorf("escape sequence %q", string(rs[i:j+1]))
			}
			i = j
		case r == '\t':
			grow()
			col = (col/8 + 1) * 8
			for len(lines[row]) < col {
				lines[row] = append(lines[row], ' ')
			}
		case r < 0x20:
			return nil, fmt.Errorf("control character %q", r)
		default:
			grow()
			if col >= width {
				return nil, fmt.Errorf("line %d wraps: %q", row, string(lines[row]))
			}
			for len(lines[row]) <= col {
				lines[row] = append(lines[row], ' ')
			}
			lines[row][col] = r
			col++
		}
	}
	var screen []string
	for _, l := range lines {
		screen = append(screen, strings.TrimRight(string(l), " "))
	}
	for len(screen) > 0 && screen[len(screen)-1] == "" {
		screen = screen[:len(screen)-1]
	}
	return screen, nil
}

// Spinless replaces the spinner (a braille rune) that starts a live line
// with "*", so that a test can compare lines whatever its frame.
func Spinless(screen []string) []string {
	out := make([]string, len(screen))
	for i, l := range screen {
		if r := []rune(l); len(r) > 0 && r[0] >= 0x2800 && r[0] <= 0x28ff {
			l = "*" + string(r[1:])
		}
		out[i] = l
	}
	return out
}
