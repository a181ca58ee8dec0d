package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"go.yaml.in/yaml/v4"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// What import reads is bounded, so that a file made to exhaust memory is
// refused with a message instead: compose files and env files are a few
// kilobytes (the largest public ones some tens), and a compose file some
// thousands of YAML nodes.
const (
	// maxFileSize bounds every file import reads: compose files, the
	// files they extend, .env, .env.example and env files.
	maxFileSize = 256 << 10
	// maxNodes bounds a compose file's YAML nodes, its aliases expanded.
	maxNodes = 100_000
)

// readBounded reads a regular file of at most maxFileSize bytes; shown
// names it in messages.
func readBounded(path, shown string) ([]byte, error) {
	// O_NONBLOCK: opening a named pipe would otherwise wait for a writer
	// (it changes nothing for a regular file).
	fh, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, catalog.Errors{{File: shown, Msg: err.Error(), Hint: "name a compose file or a folder holding one"}}
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, catalog.Errors{{File: shown, Msg: err.Error(), Hint: "make it readable"}}
	}
	if !fi.Mode().IsRegular() {
		return nil, catalog.Errors{{File: shown, Msg: "not a regular file", Hint: "import reads files, not devices, pipes or folders"}}
	}
	src, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, catalog.Errors{{File: shown, Msg: err.Error(), Hint: "make it readable"}}
	}
	if len(src) > maxFileSize {
		return nil, catalog.Errors{{File: shown, Msg: fmt.Sprintf("larger than %d KiB", maxFileSize>>10),
			Hint: "import reads compose and env files of at most that size: is it the right file?"}}
	}
	return src, nil
}

// parseYAML reads one YAML document of a bounded file, and where its
// keys are; its aliases expanded, it holds at most maxNodes nodes.
func parseYAML(path, shown string) (*yaml.Node, positions, error) {
	src, err := readBounded(path, shown)
	if err != nil {
		return nil, nil, err
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, catalog.Errors{{File: shown, Msg: "the file is empty", Hint: "a compose file declares its services under services:"}}
		}
		return nil, nil, catalog.Errors{yamlError(shown, err)}
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, nil, catalog.Errors{{File: shown, Line: more.Line, Msg: "a second YAML document",
			Hint: "import reads one document per file: split it into files"}}
	}
	pos, bad := yamlPositions(&root, shown)
	if bad != nil {
		return nil, nil, catalog.Errors{bad}
	}
	return &root, pos, nil
}
