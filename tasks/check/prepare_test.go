package check

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"
)

// deployAll builds the probe's image beside up only for a catalog with a
// network check: for one without, the engine is never asked (a nil client
// would panic); for one with, it is, and a dead engine's error comes back.
func TestPrepareProbeOnlyForNetworkChecks(t *testing.T) {
	ctx := context.Background()
	plain := testCatalog(t, "prep", []svcSpec{{name: "web", dev: 18080, checks: []string{"name = \"health\"\npath = \"/health\""}}})
	if err := PrepareProbe(ctx, plain, nil); err != nil {
		t.Fatalf("a catalog without network checks: %v", err)
	}
	withNet := testCatalog(t, "prep", []svcSpec{{name: "web", dev: 18080, checks: []string{"name = \"reach\"\nkind = \"network\"\npath = \"/health\""}}})
	dead, err := client.New(client.WithHost("unix://" + filepath.Join(t.TempDir(), "no-engine.sock")))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	if err := PrepareProbe(ctx, withNet, dead); err == nil || !strings.Contains(err.Error(), "network probe") {
		t.Fatalf("a catalog with a network check and no engine: %v, want the probe image's error", err)
	}
}
