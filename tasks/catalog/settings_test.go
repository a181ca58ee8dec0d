package catalog

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// A setting goes from the file to the model, to what the importer writes
// and back, through its type alone.
func TestSettingsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app", "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "[project]\nname = \"shop\"\n\n[[services]]\nname = \"web\"\nsource = \"app\"\nport = 80\ndev_port = 9080\nstop_grace_period = \"1m30s\"\nstop_signal = \"SIGINT\"\n"
	cat, err := Parse("services.toml", filepath.Join(dir, "services.toml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	web := cat.Services[0]
	if web.StopGracePeriod != Duration(90*time.Second) {
		t.Fatalf("StopGracePeriod = %v, want 1m30s", web.StopGracePeriod)
	}
	written := web.Settings.Values()
	if want := map[string]any{"stop_grace_period": "1m30s", "stop_signal": "SIGINT"}; !reflect.DeepEqual(written, want) {
		t.Fatalf("Values() = %v, want %v", written, want)
	}
	var back Settings
	for k, v := range written {
		if err := back.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if back != web.Settings {
		t.Fatalf("Set(Values()) = %+v, want %+v", back, web.Settings)
	}
	if got := (Settings{}).Values(); len(got) != 0 {
		t.Errorf("an unset Settings writes %v", got)
	}
	for _, c := range []struct {
		key   string
		value any
	}{{"stop_grace_period", "soon"}, {"stop_grace_period", "-5s"}, {"stop_grace_period", int64(30)}, {"stop_signal", int64(15)}, {"no_such_key", "1s"}} {
		var s Settings
		if err := s.Set(c.key, c.value); err == nil {
			t.Errorf("Set(%q, %v) = nil, want an error", c.key, c.value)
		}
	}
	if !IsSetting("stop_grace_period") || IsSetting("image") {
		t.Error("IsSetting does not tell Settings' keys from the others")
	}
	if hint, refused := ComposeKeyHint("stop_grace_period"); !refused || hint == "" {
		t.Error("compose = { stop_grace_period = ... } is not refused")
	}
}
