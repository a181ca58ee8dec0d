package engine

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// A trace the engine really sent (Docker 20.10's BuildKit, a build whose
// second COPY names a missing file), captured as the JSON stream it is:
// the decoder must find each step's name once and the step's error.
func TestTraceLinesOfRealTrace(t *testing.T) {
	f, err := os.Open("testdata/buildkit-copy-missing.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	seen := map[string]bool{}
	var got, steps []string
	traces := 0
	for sc.Scan() {
		var m buildMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("capture line: %v", err)
		}
		if m.ID == "moby.buildkit.trace" {
			traces++
			lines, started := traceLines(m.Aux, seen)
			got = append(got, lines...)
			steps = append(steps, started...)
		}
	}
	want := []string{
		"#[internal] load remote build context",
		"#copy /context /",
		"#[1/2] COPY present.txt /p",
		"#[2/2] COPY missing.txt /x",
		`ERROR: "/missing.txt" not found: not found`,
		"ERROR: context canceled: context canceled",
	}
	if traces < 10 || !reflect.DeepEqual(got, want) {
		t.Errorf("%d trace messages gave %q, want %q", traces, got, want)
	}
	// The steps, for the progress shown: each name once, in order.
	wantSteps := []string{"[internal] load remote build context", "copy /context /", "[1/2] COPY present.txt /p", "[2/2] COPY missing.txt /x"}
	if !reflect.DeepEqual(steps, wantSteps) {
		t.Errorf("steps %q, want %q", steps, wantSteps)
	}
}

// Whatever arrives, the decoder skips what it cannot read, never panics,
// and keeps what it read before.
func TestTraceLinesOfGarbage(t *testing.T) {
	for _, bad := range [][]byte{{0xff}, {0x0a, 0x80}, {0x1a, 0x05, 'a'}, {0x0a, 0x03, 0x1a, 0x01}} {
		if got, steps := traceLines(mustJSON(bad), map[string]bool{}); len(got) != 0 || len(steps) != 0 {
			t.Errorf("%x decoded as %q", bad, got)
		}
	}
	if got, _ := traceLines(json.RawMessage(`"not base64!"`), map[string]bool{}); got != nil {
		t.Errorf("bad base64 decoded as %q", got)
	}
}

func mustJSON(b []byte) json.RawMessage {
	out, _ := json.Marshal(b)
	return out
}
