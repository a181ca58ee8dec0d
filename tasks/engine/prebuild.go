package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/internal/atomicfile"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// prebuildTail is how many lines of a failed prebuild's output the error
// carries.
const prebuildTail = 30

// prebuildHash covers what decides a prebuild's result: its command, its
// extra environment and every regular file of its inputs (path, mode,
// content), leaving out its outputs and .git folders.
func prebuildHash(s *BuildSpec) (string, error) {
	h := sha256.New()
	field(h, "prebuild-v1")
	field(h, strconv.Itoa(len(s.Prebuild)))
	for _, a := range s.Prebuild {
		field(h, a)
	}
	field(h, strconv.Itoa(len(s.PrebuildEnv)))
	for _, k := range slices.Sorted(maps.Keys(s.PrebuildEnv)) {
		field(h, k)
		field(h, s.PrebuildEnv[k])
	}
	skip := map[string]bool{}
	for _, o := range s.PrebuildOutputs {
		skip[filepath.Join(s.Context, o)] = true
	}
	inputs := append([]string(nil), s.PrebuildInputs...)
	if len(inputs) == 0 {
		inputs = []string{s.Context}
	}
	for i, in := range inputs {
		if !filepath.IsAbs(in) {
			inputs[i] = filepath.Join(s.Context, in)
		}
	}
	sort.Strings(inputs)
	for _, in := range inputs {
		err := filepath.WalkDir(in, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if skip[path] || (d.IsDir() && d.Name() == ".git") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			switch {
			case d.Type().IsRegular():
				fi, err := d.Info()
				if err != nil {
					return err
				}
				field(h, path)
				field(h, strconv.FormatUint(uint64(fi.Mode().Perm()), 8))
				field(h, strconv.FormatInt(fi.Size(), 10))
				return hashFile(h, path)
			case d.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(path)
				if err != nil {
					return err
				}
				field(h, path)
				field(h, "->"+target)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("prebuild inputs: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// stampPath is where the hash of a service's last successful prebuild is
// kept: keyed by service and by context folder, so two checkouts (or two
// catalogs naming the same service) never share a stamp.
func stampPath(stateDir string, s *BuildSpec) string {
	sum := sha256.Sum256([]byte(s.Context))
	return filepath.Join(stateDir, "prebuild", s.Service+"-"+hex.EncodeToString(sum[:6])+".stamp")
}

// prebuildCurrent hashes the prebuild's inputs and reports whether its last
// successful run had the same hash and its outputs still exist: then it
// need not run. The hash is what runPrebuild records after a success.
func prebuildCurrent(s *BuildSpec, stateDir string) (sum string, current bool, err error) {
	sum, err = prebuildHash(s)
	if err != nil {
		return "", false, err
	}
	b, err := os.ReadFile(stampPath(stateDir, s))
	return sum, err == nil && strings.TrimSpace(string(b)) == sum && outputsExist(s), nil
}

// runPrebuild runs s.Prebuild in s.Context and, after a success, records
// sum as its last successful hash. progress gets each line of its output
// (cleaned of escape sequences) as it comes; the error of a failed run
// carries the last lines.
func runPrebuild(ctx context.Context, s *BuildSpec, stateDir, sum string, progress func(line string)) error {
	cmd := exec.CommandContext(ctx, s.Prebuild[0], s.Prebuild[1:]...)
	cmd.Dir = s.Context
	cmd.Env = os.Environ()
	for _, k := range slices.Sorted(maps.Keys(s.PrebuildEnv)) {
		cmd.Env = append(cmd.Env, k+"="+s.PrebuildEnv[k])
	}
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	lines := ui.Lines(func(l string) {
		if l = strings.TrimSpace(ui.Clean(l)); l != "" {
			progress(l)
		}
	})
	// One writer for stdout and stderr: exec.Cmd then writes from one
	// goroutine at a time.
	w := io.MultiWriter(&out, lines)
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	lines.Close()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("prebuild `%s`: %w", strings.Join(s.Prebuild, " "), ctx.Err())
		}
		return fmt.Errorf("prebuild `%s` in %s: %w%s", strings.Join(s.Prebuild, " "), s.Context, err,
			errTail(ui.TailLines(out.String(), prebuildTail)))
	}
	if missing := missingOutputs(s); len(missing) > 0 {
		return fmt.Errorf("prebuild `%s` succeeded but did not write %s (check prebuild_outputs)",
			strings.Join(s.Prebuild, " "), strings.Join(missing, ", "))
	}
	// The hash from before the run: an input edited while the command ran
	// then makes the next run build again, never the opposite.
	if err := atomicfile.Write(stampPath(stateDir, s), []byte(sum+"\n"), 0o644); err != nil {
		return fmt.Errorf("save prebuild stamp: %w", err)
	}
	return nil
}

func outputsExist(s *BuildSpec) bool { return len(missingOutputs(s)) == 0 }

func missingOutputs(s *BuildSpec) []string {
	var missing []string
	for _, o := range s.PrebuildOutputs {
		if _, err := os.Stat(filepath.Join(s.Context, o)); err != nil {
			missing = append(missing, o)
		}
	}
	return missing
}
