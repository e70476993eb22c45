// Package atomicfile replaces a file so that a crash leaves either the old
// content or the new, never a mix, and the new content is on disk when
// the call returns; and has the directory operations that such writes
// need (Sync, EmptyDir).
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data: a temporary file with a unique name in
// the same directory, its mode set to mode whatever the umask, fsync,
// rename over path, and fsync of the directory so that the rename itself
// survives a crash. On an error path is unchanged and no temporary file
// is left.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteOwned(path, data, mode, -1, -1)
}

// WriteOwned is Write that also gives the new file to uid and gid (-1
// leaves either as the process's).
func WriteOwned(path string, data []byte, mode os.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := fill(tmp, data, mode, uid, gid); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return Sync(dir)
}

func fill(f *os.File, data []byte, mode os.FileMode, uid, gid int) error {
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if uid != -1 || gid != -1 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// Sync makes what is at path durable (fsync): a file's data, or the
// entries of a directory, so that a file created, renamed or removed in
// it survives a crash once it returns.
func Sync(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return nil
}

// EmptyDir creates dir (0700, with its parents) or checks that it is
// empty: a directory that holds anything is an error wrapping
// fs.ErrExist.
func EmptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(es) > 0 {
		return fmt.Errorf("%s is not empty: %w", dir, fs.ErrExist)
	}
	return nil
}
