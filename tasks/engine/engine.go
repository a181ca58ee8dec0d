// Package engine talks to a Docker Engine through its API: connecting to a
// local or remote (ssh://) engine, building images with content-hash
// labels so unchanged services are never rebuilt, finding a compose
// project's containers by their labels, waiting until they are healthy,
// reading their logs and moving images from one engine to another.
package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/cli/cli/connhelper"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/labels"
)

// PingTimeout bounds the first contact with an engine, so that a hung
// daemon (one that accepts and never answers) is reported instead of
// hanging the run. A dead one is reported at once whatever this is: its
// socket refuses. It is generous because a daemon that is only busy
// (seen here: a loaded two-core machine, /_ping answered after over 5 s)
// must not be called dead.
const PingTimeout = 30 * time.Second

// Engine is a connected Docker Engine.
type Engine struct {
	// API is the moby client, for calls this package does not wrap.
	API *client.Client
	// Host is what was dialled, for messages: the ssh://, unix:// or tcp://
	// address.
	Host string
}

type options struct {
	sshFlags    []string
	socket      string
	pingTimeout time.Duration
	tls         *tlsFiles
}

type tlsFiles struct{ ca, cert, key string }

// Option changes how Connect reaches the engine.
type Option func(*options)

// WithSSHFlags passes extra flags to ssh for ssh:// hosts, e.g.
// "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/path",
// "-i", "/path/key". Each element is one ssh argument.
func WithSSHFlags(flags []string) Option {
	return func(o *options) { o.sshFlags = append(o.sshFlags, flags...) }
}

// WithForwardedSocket reaches an ssh:// host's engine through a local unix
// socket the caller forwards to it over an ssh connection it holds (ssh -L),
// instead of a `docker system dial-stdio` process per API connection. The
// host keeps its ssh:// name in messages.
func WithForwardedSocket(path string) Option {
	return func(o *options) { o.socket = path }
}

// DialUnix dials the unix socket at path whatever address an HTTP client
// asks for: an engine reached through a socket forwarded to it.
func DialUnix(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// WithTLS makes Connect reach a tcp:// host over TLS, with mutual
// authentication as dockerd --tlsverify expects: the daemon's certificate
// must be signed by the CA in caFile (and only by it: the system's roots
// are not trusted for it), and the client presents certFile with its key
// keyFile (PEM files). Plain-text tcp:// carries the Docker API, root on
// that host, to anyone on the path. The files are those of a catalog
// environment: engine.WithTLS(env.TLSCA, env.TLSCert, env.TLSKey).
// They replace any DOCKER_CERT_PATH/DOCKER_TLS_VERIFY from the
// environment; a host that is not tcp:// is an error, not silently plain.
func WithTLS(caFile, certFile, keyFile string) Option {
	return func(o *options) { o.tls = &tlsFiles{ca: caFile, cert: certFile, key: keyFile} }
}

// WithPingTimeout replaces PingTimeout, e.g. for a slow ssh link.
func WithPingTimeout(d time.Duration) Option {
	return func(o *options) { o.pingTimeout = d }
}

// Connect reaches the engine at host, checks that it answers and agrees on
// an API version. host is "" for DOCKER_HOST (or the default socket),
// ssh://user@host[:port], unix:///path or tcp://host:port. ssh:// runs the
// local ssh client with `docker system dial-stdio` on the remote host, so
// the usual ssh configuration, agent and known_hosts apply (or dials the
// socket WithForwardedSocket names). tcp:// is plain
// text unless WithTLS (or DOCKER_CERT_PATH) says otherwise.
func Connect(ctx context.Context, host string, opts ...Option) (*Engine, error) {
	o := options{pingTimeout: PingTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	fromEnv := host == ""
	if fromEnv {
		host = os.Getenv(client.EnvOverrideHost)
	}
	if o.tls != nil && !strings.HasPrefix(host, "tcp://") {
		return nil, fmt.Errorf("docker host %s: TLS applies to tcp:// hosts only", displayHost(host))
	}
	var copts []client.Opt
	switch {
	case strings.HasPrefix(host, "ssh://") && o.socket != "":
		copts = append(copts, client.WithHost("http://docker"), client.WithDialContext(DialUnix(o.socket)), client.WithAPIVersionFromEnv())
	case strings.HasPrefix(host, "ssh://"):
		h, err := connhelper.GetConnectionHelperWithSSHOpts(host, o.sshFlags)
		if err != nil {
			return nil, fmt.Errorf("docker host %s: %w", host, err)
		}
		copts = append(copts, client.WithHost(h.Host), client.WithDialContext(h.Dialer), client.WithAPIVersionFromEnv())
	case host == "":
		copts = append(copts, client.FromEnv)
	case fromEnv:
		copts = append(copts, client.FromEnv)
	default:
		// FromEnv first so DOCKER_CERT_PATH/DOCKER_TLS_VERIFY still apply to
		// an explicit tcp:// host; the host itself is the one asked for.
		copts = append(copts, client.FromEnv, client.WithHost(host))
	}
	if o.tls != nil {
		// After FromEnv, so that the files asked for win over the
		// environment's; the client then speaks https to the host.
		copts = append(copts, client.WithTLSClientConfig(o.tls.ca, o.tls.cert, o.tls.key))
	}
	api, err := client.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("docker host %s: %w", displayHost(host), err)
	}
	e := &Engine{API: api, Host: displayHost(host)}
	if host == "" {
		e.Host = api.DaemonHost()
	}
	pctx, cancel := context.WithTimeout(ctx, o.pingTimeout)
	defer cancel()
	if _, err := api.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		_ = api.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to docker at %s: %w", e.Host, ctx.Err())
		}
		return nil, unreachable(e.Host, fromEnv, o.tls != nil, err)
	}
	return e, nil
}

func displayHost(h string) string {
	if h == "" {
		return client.DefaultDockerHost
	}
	return h
}

// unreachable explains a failed ping with what to check for that kind of
// host.
func unreachable(host string, fromEnv, tls bool, err error) error {
	var hint string
	switch {
	case strings.HasPrefix(host, "ssh://"):
		hint = fmt.Sprintf("check that `ssh %s docker version` works from this machine (host key in known_hosts, key authorised, docker installed and running there)",
			strings.TrimPrefix(host, "ssh://"))
	case strings.HasPrefix(host, "unix://"):
		hint = "is the Docker daemon running? Start it with `systemctl start docker` (or `sudo dockerd`), and check that you may use the socket (group docker)"
	case tls:
		hint = "is the Docker daemon running and listening there with --tlsverify? Its certificate must be signed by the CA given (tls_ca) and name the host, and it must accept the client certificate (tls_cert)"
	default:
		hint = "is the Docker daemon running and listening there?"
	}
	if fromEnv {
		if v := os.Getenv(client.EnvOverrideHost); v != "" {
			hint += fmt.Sprintf("; DOCKER_HOST=%s is set: unset it to use the local socket", v)
		} else {
			hint += "; set DOCKER_HOST to reach another engine"
		}
	}
	return fmt.Errorf("cannot reach the Docker engine at %s: %v: %s", host, err, hint)
}

// Close releases the connection (and the ssh process of an ssh:// host).
func (e *Engine) Close() error { return e.API.Close() }

// Version returns the engine's version and API version (e.g. "20.10.24",
// "1.41").
func (e *Engine) Version(ctx context.Context) (server string, api string, err error) {
	v, err := e.API.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", "", fmt.Errorf("docker version on %s: %w", e.Host, err)
	}
	return v.Version, v.APIVersion, nil
}

// ImageID returns the ID ("sha256:...") of the image ref names. A missing
// image gives an error for which IsNotFound is true.
func (e *Engine) ImageID(ctx context.Context, ref string) (string, error) {
	img, err := e.Image(ctx, ref)
	return img.ID, err
}

// Image is an image as the runner names it.
type Image struct {
	// ID is the image ID ("sha256:...").
	ID string
	// ContextHash is its labels.ContextHash: the content hash of the build
	// context build made it from ("" for an image build did not make).
	ContextHash string
}

// Name is how output names the image: see ImageName.
func (i Image) Name() string { return ImageName(i.ContextHash, i.ID) }

// ImageName is how output names an image, one identifier everywhere: the
// content-hash tag build gave it (HashTag of its context hash, as in
// "built maestro/quality-fabric:7c41d09e5a12"), else its short ID.
func ImageName(contextHash, id string) string {
	if contextHash != "" {
		return HashTag(contextHash)
	}
	return ShortID(id)
}

// HashTag is the tag build gives an image made from a context of content
// hash sum: its first 12 hex digits.
func HashTag(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// Image inspects the image ref names. A missing image gives an error for
// which IsNotFound is true.
func (e *Engine) Image(ctx context.Context, ref string) (Image, error) {
	r, err := e.API.ImageInspect(ctx, ref)
	if err != nil {
		return Image{}, fmt.Errorf("image %s on %s: %w", ref, e.Host, err)
	}
	img := Image{ID: r.ID}
	if r.Config != nil {
		img.ContextHash = r.Config.Labels[labels.ContextHash]
	}
	return img, nil
}

// IsNotFound reports whether err says an image or container does not exist.
func IsNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// errTail formats the end of some output under an error line.
func errTail(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return "\n    " + strings.Join(lines, "\n    ")
}
