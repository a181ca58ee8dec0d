package record

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/maestro-platform/deploy/internal/atomicfile"
)

// TestFile is where testAll leaves its verdict, relative to the local
// deployment folder.
const TestFile = StateDir + "/last-testall.json"

// Test is what the last testAll on a local environment saw: the images its
// containers ran and the configuration they ran with, as the engine
// reported them for the containers it checked (and for nothing else).
// Promote ships only what such a record vouches for.
type Test struct {
	Env     string `json:"env"`
	Project string `json:"project"`
	// Images maps each service whose container testAll checked to the
	// image ID that container ran ("sha256:...").
	Images map[string]string `json:"images"`
	// Hashes maps the same services to the config-hash label of that
	// container.
	Hashes map[string]string `json:"config_hashes,omitempty"`
	// Config is the View of the configuration each checked container ran,
	// for the services whose configuration is known: the catalog's, or
	// what the last render wrote (see Rendered), whichever carries the
	// container's config hash. A service missing here ran a configuration
	// nothing on this machine describes any more.
	Config map[string]View `json:"config"`
	Passed bool            `json:"passed"`
	At     time.Time       `json:"at"`
}

// RenderFile is where render leaves what it rendered from, relative to the
// local deployment folder.
const RenderFile = StateDir + "/last-render.json"

// Rendered is what the last render of a local environment rendered from:
// each service's config hash and its View. up and testAll compare it with
// the catalog now to say that the catalog changed since, and testAll
// reads from it the configuration a container started from that render
// runs.
type Rendered struct {
	Env    string            `json:"env"`
	Hashes map[string]string `json:"config_hashes"`
	Config map[string]View   `json:"config"`
	At     time.Time         `json:"at"`
}

// WriteRendered stores rec in deployDir (RenderFile, 0600), atomically.
func WriteRendered(deployDir string, rec Rendered) error {
	return writeJSON(filepath.Join(deployDir, filepath.FromSlash(RenderFile)), "render record", rec)
}

// ReadRendered reads the record WriteRendered left in deployDir. A missing
// record is an error for which errors.Is(err, os.ErrNotExist).
func ReadRendered(deployDir string) (Rendered, error) {
	var rec Rendered
	return rec, readJSON(filepath.Join(deployDir, filepath.FromSlash(RenderFile)), "render record", &rec)
}

func writeJSON(p, what string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := atomicfile.Write(p, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func readJSON(p, what string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: %w (run `mage deployAll` to write a new one)", what, p, err)
	}
	return nil
}

// WriteTest stores rec in deployDir (TestFile, 0600), atomically, so that
// promote never reads half a record.
func WriteTest(deployDir string, rec Test) error {
	return writeJSON(filepath.Join(deployDir, filepath.FromSlash(TestFile)), "test record", rec)
}

// ReadTest reads the record WriteTest left in deployDir. A missing record
// is an error for which errors.Is(err, os.ErrNotExist).
func ReadTest(deployDir string) (Test, error) {
	var rec Test
	return rec, readJSON(filepath.Join(deployDir, filepath.FromSlash(TestFile)), "test record", &rec)
}
