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

// Test is what the last testAll on a local environment saw: the images it
// tested and the configuration they ran with. Promote ships only what such
// a record vouches for.
type Test struct {
	Env     string `json:"env"`
	Project string `json:"project"`
	// Images maps each service to the image ID it ran ("sha256:...").
	Images map[string]string `json:"images"`
	// Config is Views of the catalog at the time of the test.
	Config map[string]View `json:"config"`
	Passed bool            `json:"passed"`
	At     time.Time       `json:"at"`
}

// WriteTest stores rec in deployDir (TestFile, 0600), atomically, so that
// promote never reads half a record.
func WriteTest(deployDir string, rec Test) error {
	p := filepath.Join(deployDir, filepath.FromSlash(TestFile))
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("test record: %w", err)
	}
	if err := atomicfile.Write(p, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("test record: %w", err)
	}
	return nil
}

// ReadTest reads the record WriteTest left in deployDir. A missing record
// is an error for which errors.Is(err, os.ErrNotExist).
func ReadTest(deployDir string) (Test, error) {
	p := filepath.Join(deployDir, filepath.FromSlash(TestFile))
	var rec Test
	b, err := os.ReadFile(p)
	if err != nil {
		return rec, fmt.Errorf("test record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("test record %s: %w (run `mage testAll` to write a new one)", p, err)
	}
	return rec, nil
}
