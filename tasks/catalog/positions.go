package catalog

import (
	"strconv"
	"strings"
)

// positions maps key paths to the line they are written on. BurntSushi/toml
// keeps key positions private, so the file is scanned once more here: table
// headers and "key =" lines are enough to point a user at the right line.
// Paths look like "project.name", "services[1].dev_port",
// "services[1].checks[0].path", "environments.demo.host".
type positions map[string]int

func scanPositions(src string) positions {
	pos := positions{}
	counts := map[string]int{} // array-of-tables path -> elements seen
	table := ""                // current table path, with indices
	inMulti := ""              // closing delimiter of a multi-line string
	for i, line := range strings.Split(src, "\n") {
		n := i + 1
		t := strings.TrimSpace(line)
		if inMulti != "" {
			if strings.Contains(t, inMulti) {
				inMulti = ""
			}
			continue
		}
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
			continue
		case strings.HasPrefix(t, "[["):
			name := headerName(t[2:], "]]")
			parent, last := splitLast(name)
			base := resolveTable(parent, counts)
			arr := joinPath(base, last)
			idx := counts[arr]
			counts[arr] = idx + 1
			table = arr + "[" + strconv.Itoa(idx) + "]"
			// A nested array restarts its numbering in each new parent.
			for k := range counts {
				if strings.HasPrefix(k, table+".") {
					delete(counts, k)
				}
			}
			setOnce(pos, table, n)
			continue
		case strings.HasPrefix(t, "["):
			name := headerName(t[1:], "]")
			parent, last := splitLast(name)
			table = joinPath(resolveTable(parent, counts), last)
			setOnce(pos, table, n)
			continue
		}
		eq := strings.IndexByte(t, '=')
		if eq <= 0 {
			continue
		}
		key := joinPath(table, normKey(t[:eq]))
		setOnce(pos, key, n)
		rest := t[eq+1:]
		for _, d := range []string{`"""`, `'''`} {
			if c := strings.Count(rest, d); c%2 == 1 {
				inMulti = d
			}
		}
	}
	return pos
}

func setOnce(p positions, k string, line int) {
	if _, ok := p[k]; !ok {
		p[k] = line
	}
}

func headerName(s, end string) string {
	if i := strings.Index(s, end); i >= 0 {
		s = s[:i]
	}
	return normKey(s)
}

// normKey strips quotes and spaces from a (possibly dotted) key.
func normKey(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

func splitLast(s string) (string, string) {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// resolveTable turns "services.checks"'s parent "services" into
// "services[2]" when services is an array of tables.
func resolveTable(name string, counts map[string]int) string {
	if name == "" {
		return ""
	}
	out := ""
	for _, part := range strings.Split(name, ".") {
		out = joinPath(out, part)
		if c, ok := counts[out]; ok && c > 0 {
			out += "[" + strconv.Itoa(c-1) + "]"
		}
	}
	return out
}

// line returns the line of the most specific known prefix of key.
func (p positions) line(key string) int {
	for k := key; k != ""; {
		if n, ok := p[k]; ok {
			return n
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}
