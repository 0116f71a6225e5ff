package kojid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kib-project/kib/internal/composer"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/koji"
)

// localServer is composer.server in the results of local tasks.
const localServer = "local"

// LocalConfig is local mode: osbuildImage tasks are built on this host by
// the compose service kib serve runs (its queue, builder and Koji import),
// started inside kojid and reached over a Unix socket, so that a local
// build is imported with exactly the metadata a remote one is.
type LocalConfig struct {
	// StateDir holds the queue's database, the artifacts and the socket.
	// Required.
	StateDir string
	// Database is "" for SQLite in StateDir, or a PostgreSQL URL.
	Database string
	// Workers is how many images are built at once. Default 1.
	Workers int
	// Builder builds the images (kib serve's engine builder). Required.
	Builder jobs.Builder
	// Distros is the distro catalog requests are checked against.
	// Required.
	Distros *distro.Catalog
	// CG is the content generator name on the hub; empty means "kib".
	CG string
	// Connect returns a client of the hub logged in as a user with access to
	// the content generator (the host's own session cannot import).
	// Required.
	Connect func(ctx context.Context) (*koji.Client, error)
	// Log receives the service's log; default discards.
	Log *slog.Logger
	// Observer, if set, is told about job runs.
	Observer jobs.Observer
}

// localService is the in-process compose service of local mode.
type localService struct {
	koji string
	cfg  LocalConfig

	mu   sync.Mutex
	api  *cloudAPI
	q    *jobs.Queue
	srv  *http.Server
	done chan struct{}
}

func newLocalService(kojiServer string, cfg LocalConfig) (*localService, error) {
	switch {
	case cfg.StateDir == "":
		return nil, errors.New("osbuildImage local mode: state directory is required")
	case cfg.Builder == nil:
		return nil, errors.New("osbuildImage local mode: a builder is required")
	case cfg.Distros == nil:
		return nil, errors.New("osbuildImage local mode: a distro catalog is required")
	case cfg.Connect == nil:
		return nil, errors.New("osbuildImage local mode: a content generator login to the hub is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &localService{koji: kojiServer, cfg: cfg}, nil
}

// start starts the queue and the API on first use and returns a client of
// it.
func (l *localService) start(ctx context.Context) (*cloudAPI, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.api != nil {
		return l.api, nil
	}
	if err := os.MkdirAll(l.cfg.StateDir, 0o755); err != nil {
		return nil, err
	}
	q, err := jobs.Open(ctx, jobs.Config{
		Database: l.cfg.Database, StateDir: l.cfg.StateDir, Workers: l.cfg.Workers, Builder: l.cfg.Builder,
		Koji: &jobs.KojiHub{Server: l.koji, CG: l.cfg.CG, Connect: l.cfg.Connect},
		Log:  l.cfg.Log.With("component", "queue"), Observer: l.cfg.Observer,
	})
	if err != nil {
		return nil, err
	}
	// The queue outlives the task that started it.
	if err := q.Start(context.WithoutCancel(ctx)); err != nil {
		q.Close()
		return nil, err
	}
	h, err := composer.New(composer.Config{Queue: q, Distros: l.cfg.Distros, KojiServer: l.koji, Log: l.cfg.Log.With("component", "composer")})
	if err != nil {
		l.stopQueue(q)
		return nil, err
	}
	sock := filepath.Join(l.cfg.StateDir, "composer.sock")
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		l.stopQueue(q)
		return nil, fmt.Errorf("listening on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		l.stopQueue(q)
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		_ = srv.Serve(ln)
	}()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	api, err := newCloudAPI(ComposerConfig{Server: "http://local", HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		srv.Close()
		l.stopQueue(q)
		return nil, err
	}
	l.api, l.q, l.srv = api, q, srv
	return api, nil
}

func (l *localService) stopQueue(q *jobs.Queue) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = q.Stop(ctx)
	q.Close()
}

func (l *localService) close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.api == nil {
		return nil
	}
	err := l.srv.Shutdown(ctx)
	<-l.done
	if qerr := l.q.Stop(ctx); qerr != nil && err == nil {
		err = qerr
	}
	l.q.Close()
	l.api, l.q, l.srv = nil, nil, nil
	return err
}
