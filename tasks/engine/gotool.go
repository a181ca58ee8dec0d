package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/gobuild"
)

// GoImage describes a small Go program the runner ships to an engine as a
// FROM scratch image: a helper that runs next to the services (a network
// probe, a file tool on a deployment host) without a registry, a base image
// or a Go toolchain on that host.
type GoImage struct {
	// Name says what the program is in messages, e.g. "network probe"
	// (default Repo).
	Name string
	// Repo is the image repository; the tag is a hash of everything that
	// makes the image (see EnsureGoImage).
	Repo string
	// Source holds the program's files, typically an embed.FS. Only files
	// under Dir are used; they keep their Source paths in the hash.
	Source fs.FS
	// Dir is the module's root folder in Source (default ".").
	Dir string
	// Module is the module path written to go.mod: the path the files
	// import each other by. A go.mod in Source is replaced; without GoMod
	// the module may have no dependencies outside the standard library.
	Module string
	// GoMod, when set, is written as the throwaway module's go.mod instead
	// of the generated one ("module <Module>" and a go line), for a
	// program with dependencies: the compile then downloads them through
	// the module proxy (GOFLAGS=-mod=mod, the caller's GOPROXY and
	// GOMODCACHE), once per machine. Its module line must name Module.
	// It is kept outside Source because the go tool refuses to embed a
	// folder holding a go.mod (it is another module).
	GoMod []byte
	// GoSum is written beside GoMod as go.sum: the checksums the
	// downloads are verified against. Only with GoMod.
	GoSum []byte
	// Package is what `go build` builds, relative to the module root
	// (default ".", e.g. "./cmd/probe").
	Package string
	// Binary is the program's file name in the image, run as /Binary.
	Binary string
	// User is the image's USER ("" leaves root), e.g. "65534".
	User string
	// Labels are put on the image.
	Labels map[string]string
	// HashLabel, when set, is a label put on the image with the full hash
	// as its value.
	HashLabel string
}

// goImageBuilds serialises EnsureGoImage per image reference: two callers
// wanting the same missing image wait for one build instead of running two.
var goImageBuilds sync.Map // ref -> *sync.Mutex

// EnsureGoImage returns the reference of img on the engine api talks to,
// building it there first when it is missing.
//
// The reference is Repo:<hash[:12]>, the hash covering the engine's
// architecture, the files under Dir, GoMod and GoSum, and the image's
// recipe (module, package, binary, user, labels): an image is built once
// per program version and architecture, and found again by its tag. To
// build, the program is compiled here as a static linux binary
// (CGO_ENABLED=0, GOOS=linux, GOARCH of the engine) by the Go toolchain in
// PATH, in a throwaway module so that nothing of the caller's workspace,
// vendor folder or toolchain switching applies, then sent as a FROM
// scratch build context through ImageBuild. This works the same on a remote engine reached over
// ssh: the image is built on that host from the context sent through the
// API, with no registry and no ImageSave/Load step.
func EnsureGoImage(ctx context.Context, api *client.Client, img GoImage) (string, error) {
	img, err := img.normalize()
	if err != nil {
		return "", err
	}
	ver, err := api.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", fmt.Errorf("%s image: engine version: %w", img.Name, err)
	}
	if ver.Os != "" && ver.Os != "linux" {
		return "", fmt.Errorf("%s image: engine runs %s containers; the %s needs linux", img.Name, ver.Os, img.Name)
	}
	arch := ver.Arch
	if arch == "" {
		arch = "amd64"
	}
	hash, err := img.hash(arch)
	if err != nil {
		return "", fmt.Errorf("%s source: %w", img.Name, err)
	}
	ref := img.Repo + ":" + hash[:12]
	mu, _ := goImageBuilds.LoadOrStore(ref, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if _, err := api.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !IsNotFound(err) {
		return "", fmt.Errorf("%s image %s: %w", img.Name, ref, err)
	}
	tarball, err := img.buildContext(ctx, arch)
	if err != nil {
		return "", fmt.Errorf("%s image %s: %w", img.Name, ref, err)
	}
	labels := map[string]string{}
	for k, v := range img.Labels {
		labels[k] = v
	}
	if img.HashLabel != "" {
		labels[img.HashLabel] = hash
	}
	imageBuilds.Add(1)
	res, err := api.ImageBuild(ctx, bytes.NewReader(tarball), client.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true, Labels: labels})
	if err != nil {
		return "", fmt.Errorf("%s image %s: build: %w", img.Name, ref, err)
	}
	defer res.Body.Close()
	if err := StreamError(res.Body); err != nil {
		return "", fmt.Errorf("%s image %s: build: %w", img.Name, ref, err)
	}
	return ref, nil
}

// normalize fills in defaults and rejects an image that cannot be built,
// before any call to the engine.
func (img GoImage) normalize() (GoImage, error) {
	if img.Name == "" {
		img.Name = img.Repo
	}
	if img.Dir == "" {
		img.Dir = "."
	}
	if img.Package == "" {
		img.Package = "."
	}
	switch {
	case img.Repo == "":
		return img, fmt.Errorf("go image %s: no repository", img.Name)
	case strings.Contains(img.Repo, "@") || strings.Contains(path.Base(img.Repo), ":"):
		return img, fmt.Errorf("go image %s: repository %q must not carry a tag or digest", img.Name, img.Repo)
	case img.Source == nil:
		return img, fmt.Errorf("go image %s: no source", img.Name)
	case img.Module == "":
		return img, fmt.Errorf("go image %s: no module path", img.Name)
	case img.Binary == "" || img.Binary == "Dockerfile" || strings.ContainsAny(img.Binary, "/\\\n\"") || img.Binary == "." || img.Binary == "..":
		return img, fmt.Errorf("go image %s: binary name %q must be a plain file name", img.Name, img.Binary)
	case strings.ContainsAny(img.User, " \n"):
		return img, fmt.Errorf("go image %s: user %q must be one word", img.Name, img.User)
	case !fs.ValidPath(img.Dir):
		return img, fmt.Errorf("go image %s: source folder %q is not a valid path", img.Name, img.Dir)
	case len(img.GoSum) > 0 && len(img.GoMod) == 0:
		return img, fmt.Errorf("go image %s: a go.sum without a go.mod", img.Name)
	}
	if len(img.GoMod) > 0 {
		if m := modulePath(img.GoMod); m != img.Module {
			return img, fmt.Errorf("go image %s: its go.mod declares module %q, want %q", img.Name, m, img.Module)
		}
	}
	return img, nil
}

// modulePath returns the path of go.mod's module directive, "" when there
// is none. It reads only that directive: the go tool checks the rest.
func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		line, _, _ = strings.Cut(line, "//")
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], "\"`")
		}
	}
	return ""
}

// files walks the source files under Dir in lexical order and calls fn
// with each one's path in Source and content.
func (img GoImage) files(fn func(p string, b []byte) error) error {
	return fs.WalkDir(img.Source, img.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(img.Source, p)
		if err != nil {
			return err
		}
		return fn(p, b)
	})
}

// hash covers everything the image is made of but the Go toolchain: a
// change to the source or to the recipe gives a new tag, so an outdated
// image is never taken for the current one.
func (img GoImage) hash(arch string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "linux/%s\n", arch)
	err := img.files(func(p string, b []byte) error {
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "module %q\npackage %q\n%s", img.Module, img.Package, img.dockerfile())
	// Only when set, so that the tags of images without dependencies stay
	// what they were before GoMod existed.
	if len(img.GoMod) > 0 {
		fmt.Fprintf(h, "go.mod %d\n", len(img.GoMod))
		h.Write(img.GoMod)
		fmt.Fprintf(h, "go.sum %d\n", len(img.GoSum))
		h.Write(img.GoSum)
	}
	keys := make([]string, 0, len(img.Labels))
	for k := range img.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "label %q=%q\n", k, img.Labels[k])
	}
	fmt.Fprintf(h, "hash label %q\n", img.HashLabel)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (img GoImage) dockerfile() string {
	entry, _ := json.Marshal([]string{"/" + img.Binary})
	var b strings.Builder
	fmt.Fprintf(&b, "FROM scratch\nCOPY %s /%s\n", img.Binary, img.Binary)
	if img.User != "" {
		fmt.Fprintf(&b, "USER %s\n", img.User)
	}
	fmt.Fprintf(&b, "ENTRYPOINT %s\n", entry)
	return b.String()
}

// buildContext compiles the program and returns a build context tar
// holding it and its Dockerfile.
func (img GoImage) buildContext(ctx context.Context, arch string) ([]byte, error) {
	binary, err := img.compile(ctx, arch)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte(img.dockerfile())},
		{img.Binary, 0o755, binary},
	} {
		// A fixed time: the context depends on the program alone.
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)),
			ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// compile builds the program as a static linux binary for arch in a
// throwaway module and returns it.
func (img GoImage) compile(ctx context.Context, arch string) ([]byte, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("building the %s needs the Go toolchain, and go is not in PATH", img.Name)
	}
	tmp, err := os.MkdirTemp("", "maestro-goimage-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "src")
	err = img.files(func(p string, b []byte) error {
		rel := p
		if img.Dir != "." {
			rel = strings.TrimPrefix(p, img.Dir+"/")
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	gomod := []byte("module " + img.Module + "\n\ngo 1.22\n")
	if len(img.GoMod) > 0 {
		gomod = img.GoMod
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), gomod, 0o644); err != nil {
		return nil, err
	}
	if len(img.GoSum) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "go.sum"), img.GoSum, 0o644); err != nil {
			return nil, err
		}
	}
	bin := filepath.Join(tmp, "bin")
	cmd := exec.CommandContext(ctx, goTool, "build", gobuild.Trimpath, "-ldflags="+gobuild.Ldflags, "-o", bin, img.Package)
	cmd.Dir = dir
	// Nothing from the caller's workspace, vendor folder or toolchain
	// switching may apply to the throwaway module; its dependencies, if
	// GoMod has any, come from the module cache or the module proxy.
	cmd.Env = append(os.Environ(), gobuild.Static, "GOOS=linux", "GOARCH="+arch,
		"GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w: %s", img.Name, err, strings.TrimSpace(string(out)))
	}
	return os.ReadFile(bin)
}

// StreamError reads an ImageBuild or ImageLoad response up to the error
// the engine reports inside it and returns that error, or nil once the
// stream ends without one: such calls answer 200 even when they fail.
func StreamError(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m buildMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if f := m.failure(); f != "" {
			return errors.New(strings.TrimSpace(f))
		}
	}
}
