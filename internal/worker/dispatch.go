package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kib-project/kib/internal/jobs"
)

// Dispatcher is a jobs.Builder that hands builds to remote workers through
// the worker API (see Handler). A worker must heartbeat its job; when it
// stays silent for Lease, the build is given up with jobs.ErrRetry so the
// queue runs it again, on another worker.
type Dispatcher struct {
	lease time.Duration

	mu      sync.Mutex
	queues  map[string]chan *task // by architecture
	running map[string]*task      // by token
}

var _ jobs.Builder = (*Dispatcher)(nil)

// NewDispatcher returns a Dispatcher whose jobs expire after lease without
// a heartbeat (default 2 minutes).
func NewDispatcher(lease time.Duration) *Dispatcher {
	if lease <= 0 {
		lease = 2 * time.Minute
	}
	return &Dispatcher{lease: lease, queues: map[string]chan *task{}, running: map[string]*task{}}
}

type task struct {
	args  *jobs.BuildArgs
	token string
	beat  chan struct{}
	done  chan taskResult
	once  sync.Once

	mu       sync.Mutex
	uploaded map[string]receivedFile
	store    string // the job's place in the artifact store, if any
}

func (t *task) setStoreDir(dir string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.store = dir
}

func (t *task) storeDir() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.store
}

// receivedFile is what the server hashed while an artifact arrived.
type receivedFile struct {
	sha256 string
	size   int64
}

func (t *task) received(name, sum string, size int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.uploaded == nil {
		t.uploaded = map[string]receivedFile{}
	}
	t.uploaded[name] = receivedFile{sum, size}
}

func (t *task) upload(name string) (receivedFile, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.uploaded[name]
	return f, ok
}

type taskResult struct {
	res *jobs.BuildResult
	err error
}

func (d *Dispatcher) queue(arch string) chan *task {
	d.mu.Lock()
	defer d.mu.Unlock()
	q, ok := d.queues[arch]
	if !ok {
		q = make(chan *task)
		d.queues[arch] = q
	}
	return q
}

// Build waits for a remote worker of the image's architecture to take the
// build, then for its result.
func (d *Dispatcher) Build(ctx context.Context, args *jobs.BuildArgs) (*jobs.BuildResult, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	t := &task{args: args, token: hex.EncodeToString(b[:]), beat: make(chan struct{}, 1), done: make(chan taskResult, 1)}
	select {
	case d.queue(args.Image.Arch) <- t:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer d.drop(t.token)
	timer := time.NewTimer(d.lease)
	defer timer.Stop()
	for {
		select {
		case <-t.beat:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(d.lease)
		case r := <-t.done:
			return r.res, r.err
		case <-timer.C:
			return nil, fmt.Errorf("remote worker sent no heartbeat for %s: %w", d.lease, jobs.ErrRetry)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (d *Dispatcher) drop(token string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.running, token)
}

// take hands a waiting build of arch to a worker, waiting up to ctx's end.
func (d *Dispatcher) take(ctx context.Context, arch string) (*task, error) {
	select {
	case t := <-d.queue(arch):
		d.mu.Lock()
		d.running[t.token] = t
		d.mu.Unlock()
		return t, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// errUnknownToken is returned for a token with no running job.
var errUnknownToken = errors.New("token not found")

func (d *Dispatcher) lookup(token string) (*task, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.running[token]
	if !ok {
		return nil, errUnknownToken
	}
	return t, nil
}

func (d *Dispatcher) heartbeat(token string) error {
	t, err := d.lookup(token)
	if err != nil {
		return err
	}
	select {
	case t.beat <- struct{}{}:
	default:
	}
	return nil
}

func (d *Dispatcher) finish(token string, r taskResult) error {
	t, err := d.lookup(token)
	if err != nil {
		return err
	}
	t.once.Do(func() { t.done <- r })
	d.drop(token)
	return nil
}
