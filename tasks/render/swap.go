package render

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// swapAside moves dir aside, then tmp into its place. A crash between the
// two renames leaves dir missing and the aside folder present, which the
// next Write moves back (recoverLeftovers).
func swapAside(tmp, dir string) (string, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	aside := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".old-"+hex.EncodeToString(b))
	if err := os.Rename(dir, aside); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if back := os.Rename(aside, dir); back != nil {
			return "", fmt.Errorf("%w; and moving the old folder back from %s failed: %v", err, aside, back)
		}
		return "", err
	}
	return aside, nil
}
