package release

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/internal/atomicfile"
	"github.com/maestro-platform/deploy/tasks/catalog"
)

// TestRecordFile is where testAll leaves its verdict, relative to the local
// deployment folder.
const TestRecordFile = ".state/last-testall.json"

// TestRecord is what the last testAll on a local environment saw: the
// images it tested and the configuration they ran with. Promote ships only
// what such a record vouches for.
type TestRecord struct {
	Env     string `json:"env"`
	Project string `json:"project"`
	// Images maps each service to the image ID it ran ("sha256:...").
	Images map[string]string `json:"images"`
	// ConfigHash is ConfigHash(cat) at the time of the test.
	ConfigHash string    `json:"config_hash"`
	Passed     bool      `json:"passed"`
	At         time.Time `json:"at"`
}

// WriteTestRecord stores rec as deployDir/.state/last-testall.json,
// atomically (temp file + rename), so promote never reads half a record.
func WriteTestRecord(deployDir string, rec TestRecord) error {
	p := filepath.Join(deployDir, filepath.FromSlash(TestRecordFile))
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("test record: %w", err)
	}
	if err := atomicfile.Write(p, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("test record: %w", err)
	}
	return nil
}

// ReadTestRecord reads the record WriteTestRecord left in deployDir. A
// missing record is an error for which errors.Is(err, os.ErrNotExist).
func ReadTestRecord(deployDir string) (TestRecord, error) {
	p := filepath.Join(deployDir, filepath.FromSlash(TestRecordFile))
	var rec TestRecord
	b, err := os.ReadFile(p)
	if err != nil {
		return rec, fmt.Errorf("test record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("test record %s: %w (run `mage testAll` to write a new one)", p, err)
	}
	return rec, nil
}

// configView is what of a service decides how it runs, whatever the
// environment: not its published ports (they differ per environment by
// design), not how its image is built (the image ID covers that), not
// where in the file it is written.
type configView struct {
	Name        string
	Infra       bool
	Image       string
	Port        int
	Health      string
	Healthcheck []string
	DependsOn   []string
	Env         map[string]string
	// Secrets by hash: a changed secret changes the configuration, but the
	// hash input is never written anywhere.
	Secrets  map[string]string
	Replicas int
	Volumes  []string
	Checks   []checkView
}

type checkView struct {
	Name, Kind, Path, Contains, JSONField, JSONEquals string
	Status, Retries                                   int
	Timeout                                           time.Duration
}

// ConfigHash is a hash of the catalog's project, services and
// infrastructure as they are rendered and tested, leaving out what may
// differ between the tested environment and the promoted one: port
// columns, environments, and the build recipe (covered by image IDs).
// testAll records it; promote refuses a catalog whose hash differs.
func ConfigHash(cat *catalog.Catalog) string {
	v := struct {
		Project, Network string
		Services         []configView
	}{Project: cat.Project.Name, Network: cat.Project.Network}
	for _, s := range cat.All() {
		cv := configView{Name: s.Name, Infra: s.Infra, Image: s.Image, Port: s.Port, Health: s.Health,
			Healthcheck: s.Healthcheck, DependsOn: s.DependsOn, Env: s.Env, Replicas: s.Replicas, Volumes: s.Volumes}
		if len(s.Secrets) > 0 {
			cv.Secrets = map[string]string{}
			for k, val := range s.Secrets {
				sum := sha256.Sum256([]byte(val))
				cv.Secrets[k] = hex.EncodeToString(sum[:])
			}
		}
		for _, c := range s.Checks {
			cv.Checks = append(cv.Checks, checkView{Name: c.Name, Kind: c.Kind, Path: c.Path, Contains: c.Contains,
				JSONField: c.JSONField, JSONEquals: c.JSONEquals, Status: c.Status, Retries: c.Retries, Timeout: c.Timeout})
		}
		v.Services = append(v.Services, cv)
	}
	// encoding/json sorts map keys: the hash does not depend on map order.
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// GateError is a refused promotion: what differs from the last passing
// testAll, and how to fix it.
type GateError struct {
	Env     string
	Reasons []string
}

func (e *GateError) Error() string {
	return fmt.Sprintf("promote %s refused: the release is not what the last testAll passed:\n  - %s\n"+
		"fix: run `mage testAll` (or `mage deployAll`) on dev and promote when it passes; "+
		"to ship untested images anyway, use the force option (it says so loudly)",
		e.Env, strings.Join(e.Reasons, "\n  - "))
}

// checkGate compares the record with the images and configuration about
// to be shipped. images maps service to the local image ID now.
func checkGate(cat *catalog.Catalog, env string, rec TestRecord, recErr error, images map[string]string) error {
	if recErr != nil {
		if errors.Is(recErr, os.ErrNotExist) {
			return &GateError{Env: env, Reasons: []string{"no testAll has been recorded in " + cat.Project.DeployDir}}
		}
		return &GateError{Env: env, Reasons: []string{recErr.Error()}}
	}
	var reasons []string
	if !rec.Passed {
		reasons = append(reasons, fmt.Sprintf("the last testAll (%s, %s) failed", rec.Env, rec.At.Local().Format(time.RFC3339)))
	}
	if rec.Env != "dev" {
		reasons = append(reasons, fmt.Sprintf("the last testAll ran on %q, not on dev", rec.Env))
	}
	if rec.Project != "" && rec.Project != cat.Project.Name {
		reasons = append(reasons, fmt.Sprintf("the last testAll tested project %q, not %q", rec.Project, cat.Project.Name))
	}
	if h := ConfigHash(cat); rec.ConfigHash != h {
		reasons = append(reasons, "the catalog's services or infrastructure changed since the last testAll")
	}
	names := make([]string, 0, len(images))
	for n := range images {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tested, ok := rec.Images[n]
		switch {
		case !ok:
			reasons = append(reasons, fmt.Sprintf("%s: not in the last testAll", n))
		case tested != images[n]:
			reasons = append(reasons, fmt.Sprintf("%s: image %s is not the tested %s (rebuilt since?)", n, short(images[n]), short(tested)))
		}
	}
	if len(reasons) > 0 {
		return &GateError{Env: env, Reasons: reasons}
	}
	return nil
}

// short is an image ID as docker prints it.
func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
