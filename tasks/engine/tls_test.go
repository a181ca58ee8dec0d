package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pki is a certificate authority made for one test, and what it signed.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newCA(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &pki{cert: cert, key: key, dir: t.TempDir()}
	writePEM(t, ca.path("ca.pem"), "CERTIFICATE", der)
	return ca
}

func (ca *pki) path(name string) string { return filepath.Join(ca.dir, name) }

// issue signs a leaf certificate for a server (on 127.0.0.1) or a client,
// and returns it as a tls.Certificate; its PEM files are <name>.pem and
// <name>-key.pem.
func (ca *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, ca.path(name+".pem"), "CERTIFICATE", der)
	writePEM(t, ca.path(name+"-key.pem"), "EC PRIVATE KEY", kder)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, file, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeDaemon is an HTTPS server that answers /_ping as dockerd does, and
// demands a client certificate signed by ca, as dockerd --tlsverify does.
// It records the client certificates it saw.
type fakeDaemon struct {
	srv     *httptest.Server
	mu      sync.Mutex
	clients []string
}

func newFakeDaemon(t *testing.T, ca *pki) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{}
	serverCert := ca.issue(t, "daemon", x509.ExtKeyUsageServerAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			d.clients = append(d.clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		d.mu.Unlock()
		if !strings.HasSuffix(r.URL.Path, "/_ping") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Api-Version", "1.44")
		w.Header().Set("Ostype", "linux")
		_, _ = w.Write([]byte("OK"))
	}))
	d.srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	// The handshake failures the test provokes would be logged as noise.
	d.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	return d
}

func (d *fakeDaemon) host() string { return "tcp://" + d.srv.Listener.Addr().String() }

func (d *fakeDaemon) seen() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.clients...)
}

// WithTLS makes Connect speak TLS to a tcp:// host, trusting only the CA
// given and presenting the client certificate: a Ping succeeds against a
// daemon whose certificate that CA signed, and fails against the same
// daemon when another CA is given, or when TLS is not asked for.
func TestConnectTLS(t *testing.T) {
	for _, v := range []string{"DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "DOCKER_API_VERSION"} {
		t.Setenv(v, "")
	}
	ca := newCA(t, "maestro test CA")
	d := newFakeDaemon(t, ca)
	ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
	ctx := context.Background()

	e, err := Connect(ctx, d.host(), WithTLS(ca.path("ca.pem"), ca.path("client.pem"), ca.path("client-key.pem")))
	if err != nil {
		t.Fatalf("Connect with the daemon's CA: %v", err)
	}
	e.Close()
	if got := d.seen(); len(got) == 0 || got[0] != "client" {
		t.Errorf("the daemon saw client certificates %q, want the one given (client)", got)
	}

	// Another CA, with a client certificate of its own: the daemon's
	// certificate is not trusted, nothing reaches the daemon's handler.
	other := newCA(t, "impostor CA")
	other.issue(t, "client", x509.ExtKeyUsageClientAuth)
	before := len(d.seen())
	_, err = Connect(ctx, d.host(), WithTLS(other.path("ca.pem"), ca.path("client.pem"), ca.path("client-key.pem")),
		WithPingTimeout(5*time.Second))
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("Connect with another CA: err = %v, want the daemon's certificate refused", err)
	}
	if err != nil && !strings.Contains(err.Error(), "tls_ca") {
		t.Errorf("the error does not point at the TLS files: %v", err)
	}
	if len(d.seen()) != before {
		t.Errorf("a request reached the daemon through an untrusted handshake")
	}

	// No TLS asked for: the client speaks plain http, which a TLS daemon
	// does not answer as a Docker engine.
	if _, err := Connect(ctx, d.host(), WithPingTimeout(5*time.Second)); err == nil {
		t.Error("Connect without WithTLS reached a TLS-only daemon: the handshake was not what made it work")
	}

	// TLS is for tcp:// hosts: elsewhere it would be silently dropped.
	for _, host := range []string{"ssh://deploy@demo.example.internal", "unix:///var/run/docker.sock"} {
		_, err := Connect(ctx, host, WithTLS(ca.path("ca.pem"), ca.path("client.pem"), ca.path("client-key.pem")))
		if err == nil || !strings.Contains(err.Error(), "TLS applies to tcp:// hosts only") {
			t.Errorf("Connect(%s, WithTLS): err = %v, want it refused", host, err)
		}
	}

	// Missing files are reported, not skipped.
	_, err = Connect(ctx, d.host(), WithTLS(ca.path("nope.pem"), ca.path("client.pem"), ca.path("client-key.pem")))
	if err == nil || !strings.Contains(err.Error(), "nope.pem") {
		t.Errorf("Connect with a missing CA file: err = %v, want it named", err)
	}
}
