package reproduce

import (
	"os"
	"path/filepath"

	"github.com/kib-project/kib/internal/store"
)

// FreshStore makes a store inside st that shares st's sources (each is
// verified against its sha256 before use) but holds no pipeline outputs, so
// a build in it runs every pipeline. done removes it; if the process dies,
// the next store.Open of st does.
func FreshStore(st *store.Store) (fresh *store.Store, done func(), err error) {
	dir, done, err := st.TempDir("reproduce")
	if err != nil {
		return nil, nil, err
	}
	root := filepath.Join(dir, "store")
	if err := os.MkdirAll(root, 0o755); err != nil {
		done()
		return nil, nil, err
	}
	if err := os.Symlink(filepath.Join(st.Dir(), "sources"), filepath.Join(root, "sources")); err != nil {
		done()
		return nil, nil, err
	}
	fresh, err = store.Open(root)
	if err != nil {
		done()
		return nil, nil, err
	}
	return fresh, done, nil
}
