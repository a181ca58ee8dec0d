package render

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// yamlQuote returns s as a YAML double-quoted scalar that PyYAML (compose
// v1) and go-yaml (compose v2, compose-go) read back byte-exact. Characters
// outside YAML's printable set, line breaks of any kind and the BOM are
// escaped; everything else is kept as it is, so the file stays readable.
func yamlQuote(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("value %q is not valid UTF-8", s)
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case 0:
			b.WriteString(`\0`)
		default:
			switch {
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, `\x%02X`, r)
			// NEL, LS and PS are line breaks to YAML; FEFF is a BOM; FFFE
			// and FFFF are outside YAML's printable set.
			case r == 0x85 || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || r == 0xfeff || r == 0xfffe || r == 0xffff:
				fmt.Fprintf(&b, `\u%04X`, r)
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// composeQuote is yamlQuote for a value that compose must not interpolate:
// '$' is doubled, which compose v1 and v2 both read back as one '$'.
func composeQuote(s string) (string, error) {
	return yamlQuote(strings.ReplaceAll(s, "$", "$$"))
}

// DollarVar is the .env variable a value's '$' is written as where no
// quoting keeps it literal in both compose versions: the .env that needs it
// sets it to '$' first, and docker-compose 1.29 (python-dotenv) and compose
// v2 (compose-go's dotenv) both expand ${DollarVar} inside double quotes
// from the variables set above it. Compose v2 lets the process environment
// win over the file, so the runner never passes it to a compose CLI.
const DollarVar = "MAESTRO_DOLLAR"

// envQuote returns s written for a .env file so that docker-compose 1.29
// (python-dotenv, which interpolates ${...} in every value and decodes
// backslash escapes even in single quotes) and compose v2 (compose-go's
// dotenv, which interpolates $ in double-quoted and bare values) read back
// the same string. Bare when nothing can be misread; single-quoted when
// the value has no quote, backslash, CR or "${"; else double-quoted with
// escapes, each '$' written as ${DollarVar} (envNeedsDollar). Only what no
// .env can hold (a NUL byte, invalid UTF-8) is refused.
func envQuote(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("value is not valid UTF-8")
	}
	if strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("value holds a NUL byte")
	}
	if s != "" && envBare(s) {
		return s, nil
	}
	if !envDoubleQuoted(s) {
		return "'" + s + "'", nil
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "$", "${"+DollarVar+"}")
	return `"` + r.Replace(s) + `"`, nil
}

// envDoubleQuoted reports whether envQuote writes s double-quoted.
func envDoubleQuoted(s string) bool {
	return !(s != "" && envBare(s)) && (strings.ContainsAny(s, "'\\\r") || strings.Contains(s, "${"))
}

// envNeedsDollar reports whether s, written by envQuote, refers to
// DollarVar, which its .env must then set.
func envNeedsDollar(s string) bool { return envDoubleQuoted(s) && strings.Contains(s, "$") }

func envBare(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("_.,:/@+=%-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// shellQuote single-quotes s for bash: nothing inside is special except
// the quote itself, written as '\”.
func shellQuote(s string) (string, error) {
	if strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("value %q holds a NUL byte, which no shell argument can carry", s)
	}
	if s != "" && shellBare(s) {
		return s, nil
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

func shellBare(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("_./:@+,-", c) >= 0:
		default:
			return false
		}
	}
	return true
}
