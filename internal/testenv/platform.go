package testenv

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Platform is a private copy of the sample Maestro platform: its sources,
// a catalog with a unique project name and free dev ports, and an empty
// deployment folder. Tests may change its sources freely.
type Platform struct {
	// Root holds go.mod, services.toml and examples/.
	Root string
	// Catalog is the path of the copy's services.toml.
	Catalog string
	// Deploy is the deployment folder (not created).
	Deploy string
	// Project is the unique compose project name.
	Project string
	// DevPorts maps each published service to its dev host port.
	DevPorts map[string]int
}

// RepoRoot is the root of this repository.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// SampleCatalog is the tests' catalog of the sample platform, a fixture
// (testdata/services.toml, its sources under ../examples): the product's
// services.toml is the user's to edit, and no test reads it.
func SampleCatalog() string { return filepath.Join(RepoRoot(), "testdata", "services.toml") }

var devPortLine = regexp.MustCompile(`(?m)^dev_port = (\d+)`)

// RepoFiles are the files of the sample services that stand for their
// repositories' own compose setup, which `mage import` reads: the
// catalog's pipeline never uses them, and SamplePlatform leaves them out
// unless asked (WithRepoFiles).
var RepoFiles = []string{"docker-compose.yml", ".env.example"}

// PlatformOption changes what SamplePlatform copies.
type PlatformOption func(*platformOptions)

type platformOptions struct{ repoFiles bool }

// WithRepoFiles copies the sample services' RepoFiles too.
func WithRepoFiles() PlatformOption { return func(o *platformOptions) { o.repoFiles = true } }

// SamplePlatform copies the sample catalog (SampleCatalog) and services
// into a temporary folder, renaming the project and moving the dev ports to
// free ones so that several tests and packages can deploy at once.
func SamplePlatform(t testing.TB, prefix string, opts ...PlatformOption) *Platform {
	t.Helper()
	var o platformOptions
	for _, opt := range opts {
		opt(&o)
	}
	root := t.TempDir()
	repo := RepoRoot()
	src := filepath.Join(repo, "examples", "maestro-platform")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if d.Name() == "app" { // a binary left by an earlier build
			return nil
		}
		if !o.repoFiles && slices.Contains(RepoFiles, d.Name()) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy sample platform: %v", err)
	}
	mod := "module github.com/maestro-platform/deploy\n\ngo 1.26\n"
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := os.ReadFile(SampleCatalog())
	if err != nil {
		t.Fatal(err)
	}
	cat = []byte(strings.ReplaceAll(string(cat), `"../examples/`, `"examples/`))
	p := &Platform{Root: root, Catalog: filepath.Join(root, "services.toml"),
		Deploy: filepath.Join(root, "deployment"), Project: ProjectName(t, prefix)}
	p.UseCatalog(t, string(cat))
	return p
}

// UseCatalog makes text, a catalog of the sample platform (project
// "maestro", deploy_dir "~/deployment"), the platform's catalog: with the
// platform's project name and deployment folder, and its dev ports moved
// to free ones (DevPorts says which).
func (p *Platform) UseCatalog(t testing.TB, text string) {
	t.Helper()
	p.DevPorts = map[string]int{}
	text = strings.Replace(text, `name = "maestro"`, fmt.Sprintf("name = %q", p.Project), 1)
	text = strings.Replace(text, `deploy_dir = "~/deployment"`, fmt.Sprintf("deploy_dir = %q", p.Deploy), 1)
	matches := devPortLine.FindAllStringSubmatchIndex(text, -1)
	ports := FreePorts(t, len(matches))
	names := regexp.MustCompile(`(?m)^name = "([a-z0-9-]+)"`).FindAllStringSubmatchIndex(text, -1)
	var b strings.Builder
	last := 0
	for i, m := range matches {
		// The service a dev_port belongs to is the last name = "..." before it.
		svc := ""
		for _, n := range names {
			if n[0] < m[0] {
				svc = text[n[2]:n[3]]
			}
		}
		p.DevPorts[svc] = ports[i]
		b.WriteString(text[last:m[2]])
		fmt.Fprint(&b, ports[i])
		last = m[3]
	}
	b.WriteString(text[last:])
	if err := os.WriteFile(p.Catalog, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// RemoveImages removes every image of the platform's project
// (<project>/<service>:<tag>), as a test's cleanup does.
func (p *Platform) RemoveImages(ctx context.Context) {
	out, _ := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+p.Project+"/*").Output()
	for _, ref := range strings.Fields(string(out)) {
		_ = exec.CommandContext(ctx, "docker", "rmi", "-f", ref).Run()
	}
}
