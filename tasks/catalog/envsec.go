package catalog

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
)

// What an environment may say about where and how it deploys. An
// environment's values reach the most privileged places this tool touches:
// host names the Docker API of a machine (root there), dir is bind-mounted
// read-write into the release tool's container, and the file paths become
// ssh option values. So they are checked when the catalog loads, before
// anything prints or uses them.

const hostHint = "write ssh://user@host[:port], unix:///path/to/docker.sock or tcp://host:port"

// redactHost hides the password of a host URL, however malformed the rest
// is: everything from the first ':' of the user information up to the last
// '@' (a password may itself hold an unescaped '@' or '/').
func redactHost(h string) string {
	start := 0
	if i := strings.Index(h, "://"); i >= 0 {
		start = i + 3
	}
	at := strings.LastIndex(h, "@")
	if at < start {
		return h
	}
	colon := strings.Index(h[start:at], ":")
	if colon < 0 {
		return h
	}
	return h[:start+colon] + ":***" + h[at:]
}

// host checks an environment's Docker host and returns it parsed, or nil
// when it is refused. tls says whether TLS files are configured. Messages
// show the host with its password hidden: the catalog is committed, its
// errors end up in CI logs.
func (v *validator) host(key string, e *Environment, tls bool) *url.URL {
	return v.hostURL(key+".host", e.Host, tls)
}

// hostURL checks one Docker host URL written at key k (an environment's
// host, or one of its nodes).
func (v *validator) hostURL(k, host string, tls bool) *url.URL {
	shown := redactHost(host)
	if shown != host {
		// Checked first, on the text: whatever else is wrong, the password
		// is what must go, and url.Parse's errors would quote it. It is
		// never the way in either: ssh uses a key, tcp:// a certificate.
		v.add(k, "remove the password: ssh logs in with a key (set identity), tcp:// with a TLS client certificate (tls_cert); a password in the catalog is committed and printed",
			"host %q holds a password", shown)
		return nil
	}
	u, err := url.Parse(host)
	if err != nil {
		// url.Error quotes the URL again: keep its reason only.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		v.add(k, hostHint, "invalid host %q: %v", host, err)
		return nil
	}
	form := hostHint
	switch u.Scheme {
	case "ssh":
		form = "write ssh://user@host[:port]: the user, the machine and the port, nothing else"
	case "tcp":
		form = "write tcp://host:port: the machine and the port, nothing else"
	case "unix":
		form = "write unix:///path/to/docker.sock: the socket's path, nothing else"
	}
	// The Docker client and ssh would drop a query, fragment or path, or
	// worse, pass it on: either way the host would not be what it says.
	switch {
	case u.Scheme == "":
		v.add(k, hostHint, "host %q has no scheme", host)
	case u.Scheme != "ssh" && u.Scheme != "unix" && u.Scheme != "tcp":
		v.add(k, hostHint, "unsupported host scheme %q", u.Scheme)
	case u.RawQuery != "" || u.ForceQuery:
		v.add(k, form, "host %q has a query", host)
	case u.Fragment != "" || strings.Contains(host, "#"):
		v.add(k, form, "host %q has a fragment", host)
	case u.Scheme != "ssh" && u.User != nil:
		v.add(k, form, "host %q names a user, which a %s:// host has no use for", host, u.Scheme)
	case u.Scheme != "unix" && u.Host == "":
		v.add(k, hostHint, "host %q names no machine", host)
	case u.Scheme != "unix" && u.Path != "":
		v.add(k, form, "host %q has a path (%s)", host, u.EscapedPath())
	case u.Scheme == "tcp" && !tls && !Loopback(u.Hostname()):
		// A local dind on 127.0.0.1 never leaves the machine; anything
		// else would carry the Docker API and the uploaded .env files
		// (secrets) in clear, to anyone on the path.
		v.add(k, `add tls_ca, tls_cert and tls_key (the daemon's CA, this client's certificate and key; the daemon runs with --tlsverify), or use ssh://user@host`,
			"host %q is plain-text tcp: the Docker API (root on that host) and every uploaded .env would cross the network unencrypted", host)
	default:
		return u
	}
	return nil
}

// Loopback reports whether h is a literal loopback address (127.0.0.0/8,
// ::1): the one place a plain-text tcp:// engine is accepted. A name such
// as "localhost" is not: what it resolves to is up to the machine's
// resolver, not the catalog.
func Loopback(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// targetKey is where an environment deploys, normalised so that two
// spellings of one place compare equal: the scheme, user, lower-case
// machine and port (ssh's and Docker's default ports filled in), or the
// socket's path. "" is the local engine.
func targetKey(u *url.URL, tls bool) string {
	if u == nil {
		return ""
	}
	if u.Scheme == "unix" {
		return "unix://" + path.Clean("/"+u.Path)
	}
	h := strings.ToLower(u.Hostname())
	if a, err := netip.ParseAddr(h); err == nil {
		h = a.Unmap().String()
	}
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "ssh":
		port = "22"
	case tls:
		port = "2376" // the Docker CLI's defaults for tcp://
	default:
		port = "2375"
	}
	user := ""
	if u.User != nil && u.User.Username() != "" {
		user = u.User.Username() + "@"
	}
	return u.Scheme + "://" + user + net.JoinHostPort(h, port)
}

// systemDirs are the host's own folders. The release tool bind-mounts an
// environment's dir read-write into a container, so a dir at or under one
// of these would hand that container the host's system (dir = "/" its
// whole root).
var systemDirs = []string{"/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot",
	"/dev", "/proc", "/sys", "/run", "/var/run", "/var/lib/docker", "/root"}

const dotDotHint = `write the folder itself, without "..": the path is checked as written, and on the host a symlinked folder sends ".." elsewhere than it reads`

const dirHint = `releases are bind-mounted read-write into a container on that host: give the deployment a folder of its own, at least two levels deep and outside system folders, e.g. dir = "/home/deploy/deployment"`

// hasDotDot reports whether p has a ".." element. Such a path is refused
// rather than cleaned: "/srv/app/../../etc" means something other than it
// seems to, and on the host a symlinked element makes ".." go elsewhere
// than path.Clean thinks.
func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(p, "/"), "..")
}

// systemDir refuses an absolute, clean dir that is the root, too shallow,
// or inside a system folder.
func (v *validator) systemDir(k, dir string) {
	if dir == "/" {
		v.add(k, dirHint, "dir %q is the root of the host", dir)
		return
	}
	for _, s := range systemDirs {
		switch {
		case dir == s:
			v.add(k, dirHint, "dir %q is the system folder %s", dir, s)
			return
		case strings.HasPrefix(dir, s+"/"):
			v.add(k, dirHint, "dir %q is inside the system folder %s", dir, s)
			return
		}
	}
	if strings.Count(dir, "/") < 2 {
		// "/srv" or "/home" alone: a folder other things live in, and
		// pruning works in <dir>/releases.
		v.add(k, dirHint, "dir %q is too shallow: one level below /", dir)
	}
}

// optionPath refuses a file path that cannot travel as an ssh option value
// (-o UserKnownHostsFile="..."): a double quote would end the quoted
// value, a line break the option itself.
func (v *validator) optionPath(k, name, p string) bool {
	what := ""
	switch {
	case strings.Contains(p, `"`):
		what = "a double quote"
	case strings.ContainsAny(p, "\n\r"):
		what = "a line break"
	case strings.ContainsRune(p, 0):
		what = "a NUL byte"
	default:
		return true
	}
	v.add(k, `rename the file or its folder: the path is passed to ssh and docker as an option value, which a '"' or a line break would cut short`,
		"%s path %q holds %s", name, p, what)
	return false
}

// tlsFiles checks tls_ca, tls_cert and tls_key: all three or none, each an
// existing file, relative paths taken from the catalog's folder. It
// returns whether TLS is configured (whether any is set: a partial set is
// reported here and not again as plain text).
func (v *validator) tlsFiles(key string, r *rawEnv, e *Environment) bool {
	files := []struct {
		name string
		raw  string
		dst  *string
	}{{"tls_ca", r.TLSCA, &e.TLSCA}, {"tls_cert", r.TLSCert, &e.TLSCert}, {"tls_key", r.TLSKey, &e.TLSKey}}
	var set, missing []string
	for _, f := range files {
		if f.raw == "" {
			missing = append(missing, f.name)
			continue
		}
		set = append(set, f.name)
		k := key + "." + f.name
		if !v.optionPath(k, f.name, f.raw) {
			continue
		}
		*f.dst = v.path(f.raw)
		if fi, err := os.Stat(*f.dst); err != nil || !fi.Mode().IsRegular() {
			v.add(k, "the path is relative to the catalog file's folder; fix the path or put the PEM file there",
				"%s file %s does not exist", f.name, *f.dst)
		}
	}
	if len(set) == 0 {
		return false
	}
	if len(missing) > 0 {
		v.add(key+"."+missing[0], "add the daemon's CA (tls_ca), this client's certificate (tls_cert) and its key (tls_key), or remove them all",
			"%s missing: tls_ca, tls_cert and tls_key go together", strings.Join(missing, " and ")+isAre(len(missing)))
	}
	return true
}

func isAre(n int) string {
	if n == 1 {
		return " is"
	}
	return " are"
}

// tlsHost refuses TLS files on an environment that does not reach its
// engine over tcp://: they would be silently ignored.
func (v *validator) tlsHost(key string, r *rawEnv, e *Environment, u *url.URL) {
	k := key + ".tls_ca"
	for _, f := range []struct{ name, raw string }{{"tls_ca", r.TLSCA}, {"tls_cert", r.TLSCert}, {"tls_key", r.TLSKey}} {
		if f.raw != "" {
			k = key + "." + f.name
			break
		}
	}
	how, hint := "uses the local engine", `remove tls_ca, tls_cert and tls_key, or set host = "tcp://host:2376"`
	if u != nil {
		how = "is reached over " + u.Scheme + "://"
		if u.Scheme == "ssh" {
			hint = "remove tls_ca, tls_cert and tls_key: ssh encrypts the link itself"
		}
	}
	v.add(k, hint, "TLS files apply to tcp:// hosts only, and %q %s", e.Name, how)
}

// deployTarget is one environment's place for duplicate detection.
type deployTarget struct {
	env     *Environment
	host    string // targetKey
	dirKey  string
	written bool // dir is written in the catalog, not defaulted
}

// sameTargets refuses two environments that deploy to one folder of one
// engine: each keeps its releases in <dir>/releases and prunes there, so
// promoting one would delete the other's releases and move its current.
// Local environments that both leave dir out share the deployment folder
// by design (it is render's folder, and the catalog has always allowed
// it); one that names another's folder is refused.
func (v *validator) sameTargets(targets []deployTarget) {
	slices.SortStableFunc(targets, func(a, b deployTarget) int {
		if a.env.Line != b.env.Line {
			return a.env.Line - b.env.Line
		}
		return strings.Compare(a.env.Name, b.env.Name)
	})
	seen := map[string][]deployTarget{}
	for _, t := range targets {
		id := t.host + "\x00" + t.env.Dir
		for _, f := range seen[id] {
			if !f.written && !t.written {
				continue
			}
			on := t.host
			if on == "" {
				on = "the local engine"
			}
			v.add(t.dirKey, fmt.Sprintf("pruning the releases of one would delete the other's: give %s a dir of its own", t.env.Name),
				"environments %q and %q both deploy to %s on %s", f.env.Name, t.env.Name, t.env.Dir, on)
			break
		}
		seen[id] = append(seen[id], t)
	}
}
