package multinode_test

import (
	"os"
	"testing"

	"github.com/maestro-platform/deploy/internal/testenv"
)

// TestMain fails the package's run when its tests changed this machine's
// own network (docker0, interfaces, routes, iptables): see testenv.Main.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
