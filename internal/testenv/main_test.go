package testenv

import (
	"os"
	"testing"
)

// TestMain fails the package's run when its tests changed this machine's
// own network (docker0, interfaces, routes, iptables): see testenv.Main.
func TestMain(m *testing.M) { os.Exit(Main(m)) }
