package certs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// dataLink is the symlink in the certificate directory that points at the directory holding
// the current pair, as kubelet lays out a Secret volume. Swapping it with one rename changes
// tls.crt and tls.key together, so a reader never sees a certificate with the other's key.
const dataLink = "..data"

// writePair makes dir/tls.crt and dir/tls.key hold cert and key, unless they already do.
// It reports whether it changed anything.
func writePair(dir string, cert, key []byte) (bool, error) {
	oldCert, errCert := os.ReadFile(filepath.Join(dir, KeyCert))
	oldKey, errKey := os.ReadFile(filepath.Join(dir, KeyKey))
	if errCert == nil && errKey == nil && bytes.Equal(oldCert, cert) && bytes.Equal(oldKey, key) {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("creating certificate directory: %w", err)
	}
	data, err := os.MkdirTemp(dir, "..pair-")
	if err != nil {
		return false, fmt.Errorf("creating certificate directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(data, KeyCert), cert, 0o644); err != nil {
		return false, errors.Join(fmt.Errorf("writing %s: %w", KeyCert, err), os.RemoveAll(data))
	}
	if err := os.WriteFile(filepath.Join(data, KeyKey), key, 0o600); err != nil {
		return false, errors.Join(fmt.Errorf("writing %s: %w", KeyKey, err), os.RemoveAll(data))
	}

	oldData, _ := os.Readlink(filepath.Join(dir, dataLink))
	if err := replaceWithSymlink(filepath.Join(dir, dataLink), filepath.Base(data)); err != nil {
		return false, errors.Join(err, os.RemoveAll(data))
	}
	for _, name := range []string{KeyCert, KeyKey} {
		target := filepath.Join(dataLink, name)
		if cur, err := os.Readlink(filepath.Join(dir, name)); err == nil && cur == target {
			continue
		}
		if err := replaceWithSymlink(filepath.Join(dir, name), target); err != nil {
			return false, err
		}
	}
	// Removing the old pair is what tells a watcher of the old files (controller-runtime's
	// certwatcher follows the links) that the files changed.
	if oldData != "" && oldData != filepath.Base(data) {
		if err := os.RemoveAll(filepath.Join(dir, oldData)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true, fmt.Errorf("removing the previous certificate: %w", err)
		}
	}
	return true, nil
}

// replaceWithSymlink atomically makes path a symlink to target.
func replaceWithSymlink(path, target string) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale %s: %w", tmp, err)
	}
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("linking %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("linking %s: %w", path, err)
	}
	return nil
}
