package adapterstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lorafleet/lorafleet/pkg/peft"
)

// local is the adapter directory. Loads resolve symlinks with filepath.EvalSymlinks and
// refuse a result outside the resolved Root; the listing goes through os.Root, which cannot
// leave it either. Whoever can write in Root is trusted not to swap a symlink between the
// check and peft.Load reading the files.
type local struct {
	dir  string // Root with symlinks resolved
	root *os.Root
}

// Files of a PEFT adapter directory.
const (
	configFile  = "adapter_config.json"
	weightsFile = "adapter_model.safetensors"
	pickleFile  = "adapter_model.bin"
)

var (
	errOutside = errors.New("leaves the adapters directory")
	errAbsent  = errors.New("does not exist")
)

func openLocal(root string) (*local, error) {
	abs, err := filepath.Abs(root)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("adapterstore: adapters directory: %w", err)
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("adapterstore: adapters directory: %w", err)
	}
	return &local{dir: abs, root: r}, nil
}

// adapterDir checks a valid path ID and returns its directory with symlinks resolved.
func (l *local) adapterDir(id string) (string, error) {
	dir, err := l.resolveAdapter(id)
	switch {
	case errors.Is(err, errAbsent):
		return "", fmt.Errorf("%w: %s", ErrNotFound, id)
	case errors.Is(err, errOutside):
		return "", fmt.Errorf("%w: %s %v", ErrInvalidID, id, err)
	case err != nil:
		return "", &badAdapter{msg: fmt.Sprintf("%v: %s: %s", ErrBadAdapter, id, fsCause(err)), err: err}
	}
	return dir, nil
}

// resolveAdapter resolves the adapter directory and the files peft.Load reads in it; a
// directory without adapter_config.json is not an adapter.
func (l *local) resolveAdapter(id string) (string, error) {
	dir, err := l.resolve(filepath.FromSlash(id))
	if err != nil {
		return "", err
	}
	if _, err := l.resolve(filepath.Join(dir, configFile)); err != nil {
		return "", err
	}
	if _, err := l.resolve(filepath.Join(dir, weightsFile)); err != nil && !errors.Is(err, errAbsent) {
		return "", err // peft.Load explains a missing weights file
	}
	return dir, nil
}

// resolve returns name (relative to Root, or absolute inside it) with symlinks resolved.
func (l *local) resolve(name string) (string, error) {
	if !filepath.IsAbs(name) {
		name = filepath.Join(l.dir, name)
	}
	p, err := filepath.EvalSymlinks(name)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return "", errAbsent
	case err != nil:
		return "", err
	case !inside(l.dir, p):
		return "", errOutside
	}
	return p, nil
}

// inside reports whether p is dir or below it; both are clean absolute paths.
func inside(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// scan lists the IDs of the adapter directories under Root: name and org/name holding
// adapter_config.json.
func (l *local) scan() []string {
	var ids []string
	l.scanDir(l.root.FS(), ".", 1, &ids)
	return ids
}

func (l *local) scanDir(fsys fs.FS, dir string, depth int, ids *[]string) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		id := path.Join(dir, e.Name())
		if validPath(id) != nil || !e.IsDir() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if _, err := fs.Stat(fsys, path.Join(id, configFile)); err == nil {
			*ids = append(*ids, id)
		} else if depth == 1 {
			l.scanDir(fsys, id, 2, ids)
		}
	}
}

// parse loads the adapter in dir; in an error message, dir becomes name.
func parse(dir, name string, base peft.Base, opts peft.Options) (*peft.Adapter, error) {
	a, err := peft.Load(dir, base, opts)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), dir, name)
		return nil, &badAdapter{msg: ErrBadAdapter.Error() + ": " + msg, err: err}
	}
	return a, nil
}
