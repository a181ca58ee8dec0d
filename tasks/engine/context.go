package engine

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// hashFormat is mixed into every context hash: bump it when what the hash
// covers changes, so old labels stop matching instead of matching wrongly.
const hashFormat = "maestro-context-v1"

// entry is one file, folder or symlink sent in a build context.
type entry struct {
	rel  string // slash-separated, relative to the context
	abs  string
	info fs.FileInfo
	link string // symlink target
}

// contextEntries lists what `docker build` would send from dir: everything
// not excluded by dir/.dockerignore, in lexical order. The Dockerfile and
// .dockerignore are always sent, as the docker CLI does.
func contextEntries(dir, dockerfile string) ([]entry, error) {
	patterns, err := readIgnore(dir)
	if err != nil {
		return nil, err
	}
	if len(patterns) > 0 {
		patterns = append(patterns, "!"+filepath.ToSlash(dockerfile), "!.dockerignore")
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ".dockerignore"), err)
	}
	var out []entry
	parents := map[string]patternmatcher.MatchInfo{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		// The same walk as the docker CLI's context tar (moby/go-archive
		// TarWithOptions), so the hash covers exactly what is sent.
		skip, info, err := pm.MatchesUsingParentResults(rel, parents[filepath.Dir(rel)])
		if err != nil {
			return err
		}
		if d.IsDir() {
			parents[rel] = info
		}
		if skip {
			if !d.IsDir() {
				return nil
			}
			if !pm.Exclusions() {
				return filepath.SkipDir
			}
			prefix := rel + string(filepath.Separator)
			for _, p := range pm.Patterns() {
				if p.Exclusion() && strings.HasPrefix(p.String()+string(filepath.Separator), prefix) {
					return nil // an exception may re-include something below
				}
			}
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{rel: filepath.ToSlash(rel), abs: path, info: fi}
		switch {
		case fi.Mode().IsRegular(), fi.IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.link, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			return nil // sockets, devices, pipes: docker sends none of them usefully
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read build context %s: %w", dir, err)
	}
	return out, nil
}

func readIgnore(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return p, nil
}

// contextHash is the content hash of a build: the format version, the
// Dockerfile name, build args, labels, then every entry's path, type,
// permissions and content (or link target). Times and owners are left
// out: they do not change the image's meaning.
func contextHash(entries []entry, dockerfile string, buildArgs, labels map[string]string) (string, error) {
	h := sha256.New()
	field(h, hashFormat)
	field(h, filepath.ToSlash(dockerfile))
	for _, m := range []map[string]string{buildArgs, labels} {
		field(h, strconv.Itoa(len(m)))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			field(h, k)
			field(h, m[k])
		}
	}
	for _, e := range entries {
		field(h, e.rel)
		field(h, strconv.FormatUint(uint64(e.info.Mode()&(fs.ModeType|fs.ModePerm)), 8))
		switch {
		case e.info.Mode().IsRegular():
			field(h, strconv.FormatInt(e.info.Size(), 10))
			if err := hashFile(h, e.abs); err != nil {
				return "", err
			}
		case e.link != "":
			field(h, e.link)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// field writes s with its length, so no two sequences of fields hash alike.
func field(h hash.Hash, s string) {
	h.Write([]byte(strconv.Itoa(len(s))))
	h.Write([]byte{':'})
	h.Write([]byte(s))
}

func hashFile(h hash.Hash, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}

// writeTar writes entries as the build context tar. Owners are root, as
// the docker CLI sends them.
func writeTar(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr, err := tar.FileInfoHeader(e.info, e.link)
		if err != nil {
			return fmt.Errorf("%s: %w", e.abs, err)
		}
		hdr.Name = e.rel
		if e.info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if e.info.Mode().IsRegular() {
			if err := copyFile(tw, e.abs, e.info.Size()); err != nil {
				return fmt.Errorf("%s: %w", e.abs, err)
			}
		}
	}
	return tw.Close()
}

// copyFile copies exactly size bytes: a file that grew since it was listed
// must not corrupt the tar.
func copyFile(w io.Writer, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("changed while being sent (%d of %d bytes)", n, size)
	}
	return nil
}
