package proxy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The proxy program is pinned to one Caddy release, declares the module
// the image recipe names, and stays out of the deploy module: Caddy must
// never become one of its dependencies.
func TestImageSources(t *testing.T) {
	if !bytes.HasPrefix(caddyMod, []byte("module "+caddyModule+"\n")) {
		t.Errorf("caddy.mod does not declare module %s:\n%.80s", caddyModule, caddyMod)
	}
	const pin = "github.com/caddyserver/caddy/v2 v2.11.9"
	if !bytes.Contains(caddyMod, []byte("require "+pin+"\n")) || !bytes.Contains(caddySum, []byte(pin+" h1:")) {
		t.Errorf("caddy.mod and caddy.sum do not pin %s", pin)
	}
	main, err := caddySource.ReadFile("_caddy/main.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"github.com/caddyserver/caddy/v2/cmd"`, `"github.com/caddyserver/caddy/v2/modules/caddyhttp"`,
		`"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"`} {
		if !bytes.Contains(main, []byte(want)) {
			t.Errorf("main.go does not import %s", want)
		}
	}
	if bytes.Contains(main, []byte("caddy/v2/modules/standard")) {
		t.Errorf("main.go imports Caddy's standard modules: the proxy is the minimal build")
	}
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(gomod), "caddyserver") {
		t.Errorf("the deploy module's go.mod requires Caddy: every build of the tool would compile it")
	}
	img := image()
	if img.Module != caddyModule || img.Dir != "_caddy" || string(img.GoMod) != string(caddyMod) || string(img.GoSum) != string(caddySum) {
		t.Errorf("image recipe %+v", img)
	}
}
