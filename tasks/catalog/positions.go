package catalog

import (
	"strconv"
	"strings"
)

// positions maps key paths to the line they are written on. BurntSushi/toml
// keeps key positions private, so the file is scanned once more here. Paths
// look like "project.name", "services[1].dev_port",
// "services[1].checks[0].path", "environments.demo.host",
// "services[0].env.LOG_LEVEL" (inside an inline table) and
// "services[0].volumes[2]" (an array element).
type positions map[string]int

// scanPositions records where each key, table header and array element
// starts. It only runs on text that already decoded as TOML, so it need not
// report syntax errors; it only has to keep in step with strings, arrays and
// inline tables that span lines, so that their content is never mistaken
// for keys or headers.
func scanPositions(src string) positions {
	s := &scanner{src: src, line: 1, pos: positions{}, counts: map[string]int{}}
	table := ""
	for {
		s.skipBlank(true)
		if s.eof() {
			return s.pos
		}
		start := s.i
		if s.peek() == '[' {
			table = s.header()
		} else {
			key := s.key()
			path := joinPath(table, key)
			if key != "" {
				setOnce(s.pos, path, s.line)
			}
			s.skipBlank(false)
			if !s.eof() && s.peek() == '=' {
				s.i++
				s.value(path)
			}
		}
		s.skipLine()
		if s.i == start {
			s.advance() // never loop on text this scanner does not understand
		}
	}
}

type scanner struct {
	src    string
	i      int
	line   int
	pos    positions
	counts map[string]int // array-of-tables path (with parent indices) -> elements seen
}

func (s *scanner) eof() bool  { return s.i >= len(s.src) }
func (s *scanner) peek() byte { return s.src[s.i] }

func (s *scanner) advance() {
	if s.src[s.i] == '\n' {
		s.line++
	}
	s.i++
}

// skipBlank skips spaces and comments, and newlines too when newlines is set.
func (s *scanner) skipBlank(newlines bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		case c == '\n' && newlines:
			s.advance()
		case c == '#':
			for !s.eof() && s.peek() != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

// skipLine moves past the end of the current line.
func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.i++
	}
	if !s.eof() {
		s.advance()
	}
}

// header reads [a.b] or [[a.b]] and returns the table's path with indices.
func (s *scanner) header() string {
	line := s.line
	s.i++
	array := !s.eof() && s.peek() == '['
	if array {
		s.i++
	}
	parts := s.keyParts()
	parent := resolveTable(parts[:max(len(parts)-1, 0)], s.counts)
	table := ""
	if len(parts) > 0 {
		table = joinPath(parent, parts[len(parts)-1])
	}
	if array {
		idx := s.counts[table]
		s.counts[table] = idx + 1
		table += "[" + strconv.Itoa(idx) + "]"
	}
	setOnce(s.pos, table, line)
	return table
}

// key reads a possibly dotted, possibly quoted key and returns it joined
// with dots, quotes removed.
func (s *scanner) key() string { return strings.Join(s.keyParts(), ".") }

func (s *scanner) keyParts() []string {
	var parts []string
	for {
		s.skipBlank(false)
		if s.eof() {
			return parts
		}
		switch c := s.peek(); {
		case c == '"':
			parts = append(parts, s.basicString())
		case c == '\'':
			parts = append(parts, s.literalString())
		case isBare(c):
			j := s.i
			for j < len(s.src) && isBare(s.src[j]) {
				j++
			}
			parts = append(parts, s.src[s.i:j])
			s.i = j
		default:
			return parts
		}
		s.skipBlank(false)
		if s.eof() || s.peek() != '.' {
			return parts
		}
		s.i++
	}
}

func isBare(c byte) bool {
	return c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// value skips one value, recording the elements of arrays and the keys of
// inline tables under path.
func (s *scanner) value(path string) {
	s.skipBlank(false)
	if s.eof() {
		return
	}
	switch s.peek() {
	case '"':
		if strings.HasPrefix(s.src[s.i:], `"""`) {
			s.multiline(`"""`, true)
		} else {
			s.basicString()
		}
	case '\'':
		if strings.HasPrefix(s.src[s.i:], `'''`) {
			s.multiline(`'''`, false)
		} else {
			s.literalString()
		}
	case '[':
		s.i++
		for idx := 0; ; {
			s.skipBlank(true)
			if s.eof() {
				return
			}
			switch s.peek() {
			case ']':
				s.i++
				return
			case ',':
				s.i++
				idx++
				continue
			}
			elem := path + "[" + strconv.Itoa(idx) + "]"
			setOnce(s.pos, elem, s.line)
			start := s.i
			s.value(elem)
			if s.i == start {
				s.advance()
			}
		}
	case '{':
		s.i++
		for {
			s.skipBlank(true)
			if s.eof() {
				return
			}
			switch s.peek() {
			case '}':
				s.i++
				return
			case ',':
				s.i++
				continue
			}
			start := s.i
			k := joinPath(path, s.key())
			setOnce(s.pos, k, s.line)
			s.skipBlank(false)
			if !s.eof() && s.peek() == '=' {
				s.i++
				s.value(k)
			}
			if s.i == start {
				s.advance()
			}
		}
	default: // number, boolean, date: up to the next delimiter
		for !s.eof() && !strings.ContainsRune(",]}#\n", rune(s.peek())) {
			s.i++
		}
	}
}

// basicString reads "..." and returns its content, escapes decoded.
func (s *scanner) basicString() string {
	j := s.i + 1
	for j < len(s.src) && s.src[j] != '"' && s.src[j] != '\n' {
		if s.src[j] == '\\' {
			j++
		}
		j++
	}
	raw := s.src[s.i:min(j+1, len(s.src))]
	s.i = min(j+1, len(s.src))
	if u, err := strconv.Unquote(raw); err == nil {
		return u
	}
	return strings.Trim(raw, `"`)
}

// literalString reads '...' and returns its content.
func (s *scanner) literalString() string {
	j := s.i + 1
	for j < len(s.src) && s.src[j] != '\'' && s.src[j] != '\n' {
		j++
	}
	out := s.src[s.i+1 : min(j, len(s.src))]
	s.i = min(j+1, len(s.src))
	return out
}

// multiline skips a """ or ”' string, which may span lines and may end in
// up to two extra quote characters that belong to its content.
func (s *scanner) multiline(delim string, escapes bool) {
	s.i += len(delim)
	for !s.eof() {
		if escapes && s.peek() == '\\' {
			s.i++
			if !s.eof() {
				s.advance()
			}
			continue
		}
		if strings.HasPrefix(s.src[s.i:], delim) {
			s.i += len(delim)
			for n := 0; n < 2 && !s.eof() && s.peek() == delim[0]; n++ {
				s.i++
			}
			return
		}
		s.advance()
	}
}

func setOnce(p positions, k string, line int) {
	if _, ok := p[k]; !ok {
		p[k] = line
	}
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	return a + "." + b
}

// resolveTable turns the parent of a header such as [[services.checks]]
// into its path with indices: "services" becomes "services[2]" when
// services is an array of tables whose third element is the current one.
func resolveTable(parts []string, counts map[string]int) string {
	out := ""
	for _, part := range parts {
		out = joinPath(out, part)
		if c, ok := counts[out]; ok && c > 0 {
			out += "[" + strconv.Itoa(c-1) + "]"
		}
	}
	return out
}

// line returns the line of the most specific known prefix of key.
func (p positions) line(key string) int { return NearestLine(p, key) }

// NearestLine returns the line lines holds for the most specific prefix
// of key ("a.b[2].c", then "a.b[2]", "a.b", "a"), or 0: a key written
// inline, or defaulted, is reported at the line of what holds it.
func NearestLine(lines map[string]int, key string) int {
	for k := key; k != ""; {
		if n, ok := lines[k]; ok {
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
