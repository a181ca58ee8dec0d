package engine

import (
	"encoding/binary"
	"encoding/json"
	"reflect"
	"testing"
)

// field encodes one length-delimited protobuf field.
func pbField(num int, v []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(num<<3|2))
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func TestTraceLines(t *testing.T) {
	vertex := append(pbField(1, []byte("sha256:d1")), pbField(3, []byte("[2/2] RUN make"))...)
	vertex = append(vertex, 0x20, 0x01) // cached = true: a varint field is skipped
	failed := append(pbField(1, []byte("sha256:d1")), pbField(7, []byte("exit code: 2"))...)
	log := append(pbField(1, []byte("sha256:d1")), pbField(4, []byte("cc: error\nmake: *** [all] Error 1\n"))...)
	msg := append(append(pbField(1, vertex), pbField(3, log)...), pbField(1, failed)...)
	aux, _ := json.Marshal(msg) // []byte marshals as base64, as the engine sends it
	seen := map[string]bool{}
	got := traceLines(aux, seen)
	want := []string{"#[2/2] RUN make", "cc: error", "make: *** [all] Error 1", "ERROR: exit code: 2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("traceLines = %q, want %q", got, want)
	}
	// The same step again is not named twice.
	if again := traceLines(mustJSON(pbField(1, vertex)), seen); len(again) != 0 {
		t.Errorf("step named twice: %q", again)
	}
	// Garbage is skipped, never a panic.
	for _, bad := range [][]byte{{0xff}, {0x0a, 0x80}, pbField(3, []byte{0x22, 0x05, 'a'})} {
		_ = traceLines(mustJSON(bad), map[string]bool{})
	}
}

func mustJSON(b []byte) json.RawMessage {
	out, _ := json.Marshal(b)
	return out
}
