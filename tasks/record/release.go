package record

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/internal/atomicfile"
)

// ReleasesDir holds the local record of every release shipped from this
// machine, per environment: <deployDir>/.state/releases/<env>/<id>/.
const ReleasesDir = StateDir + "/releases"

// releaseFile is the record's own file within a release's folder; the
// release's files sit beside it under files/.
const releaseFile = "release.json"

// Release is the local record of a shipped release: what was sent, so
// that a rollback runs exactly that, never what a host says it was.
type Release struct {
	ID       string `json:"id"`
	Env      string `json:"env"`
	Project  string `json:"project"`
	Previous string `json:"previous,omitempty"`
	// Images maps each service to the pinned reference shipped and
	// ImageIDs to its image ID.
	Images   map[string]string `json:"images"`
	ImageIDs map[string]string `json:"image_ids"`
	// Hashes maps each service to its config hash (labels.ConfigHash).
	Hashes map[string]string `json:"config_hashes"`
	// Config is Views of the catalog that made it.
	Config map[string]View `json:"config"`
	// Services is what runs, in start order, as the runtime needs it: a
	// rollback runs the release as it was, whatever the catalog says now.
	Services []Service `json:"services"`
	// Files maps each file of the release to the SHA-256 of its content.
	Files map[string]string `json:"files"`
	At    time.Time         `json:"at"`
}

// Service is one service of a recorded release.
type Service struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"container_port"`
	// HostPort is its published port (0: not published).
	HostPort int  `json:"host_port,omitempty"`
	Stateful bool `json:"stateful,omitempty"`
	// Secrets are the keys of its secrets; their values are in the
	// release's .env files only.
	Secrets []string `json:"secrets,omitempty"`
	// DependsOn names the services it needs healthy first.
	DependsOn []string `json:"depends_on,omitempty"`
	// OneShot services run once and are done when they exit 0.
	OneShot bool `json:"one_shot,omitempty"`
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func releaseDir(deployDir, env, id string) (string, error) {
	if !safeName.MatchString(env) || !safeName.MatchString(id) {
		return "", fmt.Errorf("invalid environment or release id %q, %q", env, id)
	}
	return filepath.Join(deployDir, filepath.FromSlash(ReleasesDir), env, id), nil
}

// FileSum is how a release's file is recorded.
func FileSum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// SaveRelease keeps rel and its files (path -> content, mode) in
// deployDir: the folder is private (0700) and files keep their modes (the
// .env files are 0600). It is written beside and renamed into place, so a
// record is whole or absent.
func SaveRelease(deployDir string, rel Release, files map[string][]byte, modes map[string]fs.FileMode) (string, error) {
	dir, err := releaseDir(deployDir, rel.Env, rel.ID)
	if err != nil {
		return "", err
	}
	rel.Files = map[string]string{}
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Join(tmp, "files"), 0o700); err != nil {
		return "", fmt.Errorf("release record: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !validRel(name) {
			return "", fmt.Errorf("release record: file name %q leaves the folder", name)
		}
		p := filepath.Join(tmp, "files", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return "", err
		}
		mode := modes[name] & 0o777
		if mode == 0 {
			mode = 0o600
		}
		if err := os.WriteFile(p, files[name], mode); err != nil {
			return "", fmt.Errorf("release record: %w", err)
		}
		rel.Files[name] = FileSum(files[name])
	}
	b, err := json.MarshalIndent(rel, "", "  ")
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(filepath.Join(tmp, releaseFile), append(b, '\n'), 0o600); err != nil {
		return "", err
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("release record: %w", err)
	}
	return filepath.Join(dir, "files"), nil
}

func validRel(name string) bool {
	return name != "" && !filepath.IsAbs(name) && filepath.Clean(name) == filepath.FromSlash(name) && !strings.HasPrefix(name, "..")
}

// ErrNoRecord is a release this machine holds no record of.
var ErrNoRecord = errors.New("no local record of this release")

// LoadRelease reads the record of release id of env, and the folder its
// files are in.
func LoadRelease(deployDir, env, id string) (*Release, string, error) {
	dir, err := releaseDir(deployDir, env, id)
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, releaseFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("release %s of %s: %w in %s", id, env, ErrNoRecord, filepath.Dir(dir))
	}
	if err != nil {
		return nil, "", err
	}
	var rel Release
	if err := json.Unmarshal(b, &rel); err != nil {
		return nil, "", fmt.Errorf("release record %s: %w", dir, err)
	}
	if rel.ID != id || rel.Env != env {
		return nil, "", fmt.Errorf("release record %s is of %s/%s", dir, rel.Env, rel.ID)
	}
	return &rel, filepath.Join(dir, "files"), nil
}

// Releases lists the ids of env's releases recorded here, oldest first.
func Releases(deployDir, env string) []string {
	entries, _ := os.ReadDir(filepath.Join(deployDir, filepath.FromSlash(ReleasesDir), env))
	var ids []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			if _, err := os.Stat(filepath.Join(deployDir, filepath.FromSlash(ReleasesDir), env, e.Name(), releaseFile)); err == nil {
				ids = append(ids, e.Name())
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// Verify compares what a host holds of the release with the record: the
// same files, byte for byte. It returns every difference. kept, when not
// nil, names the files that never went to the host (a swarm release's
// .env files): they may be missing there, and must be as shipped when
// present (a release shipped before they stayed here).
func (r *Release) Verify(got map[string][]byte, kept func(name string) bool) error {
	var diffs []string
	for _, name := range slices.Sorted(maps.Keys(r.Files)) {
		b, ok := got[name]
		switch {
		case !ok && kept != nil && kept(name):
		case !ok:
			diffs = append(diffs, name+": missing on the host")
		case FileSum(b) != r.Files[name]:
			diffs = append(diffs, name+": changed on the host")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := r.Files[name]; !ok {
			diffs = append(diffs, name+": added on the host")
		}
	}
	if len(diffs) > 0 {
		return &TamperedError{Release: r.ID, Diffs: diffs}
	}
	return nil
}

// TamperedError is a release whose files on the host are not what was
// shipped.
type TamperedError struct {
	Release string
	Diffs   []string
}

func (e *TamperedError) Error() string {
	return fmt.Sprintf("release %s on the host is not what was shipped from here:\n  - %s\n"+
		"refusing to run it: someone or something changed the release folder on the host; "+
		"find out who, then promote again", e.Release, strings.Join(e.Diffs, "\n  - "))
}

// PruneReleases removes the records of env's releases that are no longer
// on the host (keep lists those that are).
func PruneReleases(deployDir, env string, keep []string) {
	for _, id := range Releases(deployDir, env) {
		if !slices.Contains(keep, id) {
			if dir, err := releaseDir(deployDir, env, id); err == nil {
				_ = os.RemoveAll(dir)
			}
		}
	}
}
