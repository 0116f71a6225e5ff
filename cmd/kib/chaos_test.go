package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// chaosConfig sizes a chaos run. The defaults are the short form run by
// make test; make chaos sets the KIB_CHAOS_* variables for the long one.
type chaosConfig struct {
	seed                     uint64
	composes, kills, outages int
	cuts                     int
	maxOutage                time.Duration
	deadline                 time.Duration
	backends                 []string
	// allRemote runs remote workers on every backend, not only the first.
	allRemote bool
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	c := chaosConfig{
		seed:      uint64(time.Now().UnixNano()),
		composes:  envInt("KIB_CHAOS_COMPOSES", 12),
		kills:     envInt("KIB_CHAOS_KILLS", 3),
		outages:   envInt("KIB_CHAOS_OUTAGES", 3),
		cuts:      envInt("KIB_CHAOS_CUTS", 3),
		maxOutage: time.Duration(envInt("KIB_CHAOS_MAX_OUTAGE_SECONDS", 3)) * time.Second,
		deadline:  time.Duration(envInt("KIB_CHAOS_DEADLINE_SECONDS", 120)) * time.Second,
		backends:  jobstest.Backends,
		allRemote: os.Getenv("KIB_CHAOS_ALL_REMOTE") != "",
	}
	if s := os.Getenv("KIB_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KIB_CHAOS_SEED=%q: %v", s, err)
		}
		c.seed = v
	}
	if b := os.Getenv("KIB_CHAOS_BACKENDS"); b != "" {
		c.backends = strings.Split(b, ",")
	}
	return c
}

// TestChaos runs Koji and plain composes through real `kib serve`
// processes (built with the chaos tag: a fast stand-in build step that
// runs a host command) on SQLite and PostgreSQL, while it SIGKILLs and
// restarts the service at random moments, takes the Koji hub down and cuts
// uploads. Afterwards every compose is final, every Koji reservation was
// imported exactly once or refunded, no process of a killed service is
// left, and every artifact matches its recorded sha256. The seed is
// printed; KIB_CHAOS_SEED replays a run.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kib serve processes; run without -short")
	}
	cfg := chaosConfigFromEnv(t)
	t.Logf("chaos seed %d (replay: KIB_CHAOS_SEED=%d)", cfg.seed, cfg.seed)
	bin := chaosKib(t)
	runs := 0
	for _, remote := range []bool{false, true} {
		for _, backend := range cfg.backends {
			name := backend
			if remote {
				// The short form runs remote workers on SQLite only.
				if backend != cfg.backends[0] && !cfg.allRemote {
					continue
				}
				name += "-remote-workers"
			}
			runs++
			t.Run(name, func(t *testing.T) {
				r := &chaosRun{t: t, cfg: cfg, bin: bin, remote: remote, rng: rand.New(rand.NewPCG(cfg.seed, uint64(runs)))}
				r.run(backend)
			})
		}
	}
}

type chaosRun struct {
	t   *testing.T
	cfg chaosConfig
	bin string
	rng *rand.Rand

	hub     *kojitest.Hub
	hubDown atomic.Bool
	kojiURL string
	token   string
	addr    string
	remote  bool
	mu      sync.Mutex
	procs   map[string]*chaosProc
	logs    *os.File
	kills   map[string]int
}

// chaosProc is one kib process of the run: kib serve or a kib worker.
type chaosProc struct {
	args []string
	cmd  *exec.Cmd
	errc chan error
}

// composeRef is one submitted compose.
type composeRef struct {
	id      string
	koji    bool
	release string
}

func (r *chaosRun) run(backend string) {
	r.setup(backend)
	r.chaos(backend)
}

// setup starts the hub, its proxy and the kib processes.
func (r *chaosRun) setup(backend string) {
	t := r.t
	r.hub = kojitest.New(t, kojitest.Options{})
	r.hub.AddUser("kib", "pw")
	r.hub.AddContentGenerator("kib", "kib")
	hubURL, _ := url.Parse(r.hub.URL)
	// The service reaches the hub through a proxy that can go down: an
	// outage drops every connection.
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: hubURL.Scheme, Host: hubURL.Host})
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.hubDown.Load() {
			panic(http.ErrAbortHandler)
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(proxy.Close)
	r.kojiURL = proxy.URL + hubURL.Path

	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("pw\n"), 0o600)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	l.Close()
	r.token = fmt.Sprintf("kibchaos-%d-%d", os.Getpid(), r.rng.Uint32())
	serve := []string{"serve", "--listen", r.addr, "--state-dir", filepath.Join(dir, "state"), "--workers", "2",
		"--database", jobstest.Database(t, backend), "--koji-server", r.kojiURL, "--koji-user", "kib", "--koji-password-file", pw,
		"--job-heartbeat-timeout", "4s", "--log-level", "info"}
	r.procs = map[string]*chaosProc{"serve": {args: serve}}
	r.kills = map[string]int{}
	if r.remote {
		serve = append(serve, "--remote-workers", "--lease", "3s")
		r.procs["serve"].args = serve
		for _, w := range []string{"worker-1", "worker-2"} {
			r.procs[w] = &chaosProc{args: []string{"worker", "--server", "http://" + r.addr, "--state-dir", filepath.Join(dir, w), "--heartbeat", "300ms"}}
		}
	}
	r.logs, _ = os.Create(filepath.Join(dir, "kib.log"))
	t.Cleanup(func() {
		r.logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "kib.log"))
			t.Logf("kib log (last 6000 bytes):\n%s", tail(string(b), 6000))
		}
	})
	for name := range r.procs {
		r.start(name)
	}
	t.Cleanup(func() {
		for name := range r.procs {
			r.kill(name)
		}
	})
}

// chaos submits the composes among the faults and checks the outcome.
func (r *chaosRun) chaos(backend string) {
	t := r.t

	// Submit the composes in batches between the faults.
	var composes []composeRef
	submit := func(n int) {
		for range n {
			if len(composes) >= r.cfg.composes {
				return
			}
			composes = append(composes, r.submit(len(composes)))
		}
	}
	events := make([]string, 0, r.cfg.kills+r.cfg.outages+r.cfg.cuts)
	for range r.cfg.kills {
		events = append(events, "kill")
	}
	for range r.cfg.outages {
		events = append(events, "outage")
	}
	for range r.cfg.cuts {
		events = append(events, "cut")
	}
	r.rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	perEvent := max(1, r.cfg.composes/(len(events)+1))
	var outages sync.WaitGroup
	for _, ev := range events {
		submit(perEvent)
		time.Sleep(time.Duration(r.rng.IntN(1500)) * time.Millisecond)
		switch ev {
		case "kill":
			victim := "serve"
			if r.remote && r.rng.IntN(2) == 0 {
				victim = fmt.Sprintf("worker-%d", 1+r.rng.IntN(2))
			}
			r.kill(victim)
			r.kills[victim]++
			time.Sleep(time.Duration(r.rng.IntN(500)) * time.Millisecond)
			r.start(victim)
		case "outage":
			d := time.Second + time.Duration(r.rng.Int64N(int64(max(1, r.cfg.maxOutage-time.Second+1))))
			outages.Wait() // one outage at a time
			r.hubDown.Store(true)
			outages.Add(1)
			go func() {
				defer outages.Done()
				time.Sleep(d)
				r.hubDown.Store(false)
			}()
		case "cut":
			r.hub.Inject(kojitest.Injection{Method: "rawUpload", Drop: true, DropAfter: r.rng.IntN(12)})
		}
	}
	submit(r.cfg.composes)
	outages.Wait()

	// Every compose reaches a final state.
	deadline := time.Now().Add(r.cfg.deadline)
	final := map[string]map[string]any{}
	for len(final) < len(composes) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d composes not final after %s (seed %d)", len(composes)-len(final), len(composes), r.cfg.deadline, r.cfg.seed)
		}
		for _, c := range composes {
			if final[c.id] != nil {
				continue
			}
			st := r.getJSON("/api/image-builder-composer/v2/composes/" + c.id)
			if s := st["status"]; s == "success" || s == "failure" {
				final[c.id] = st
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Refunds owed are retried until none is left.
	for {
		owed := 0
		for _, c := range composes {
			if !c.koji {
				continue
			}
			final[c.id] = r.getJSON("/api/image-builder-composer/v2/composes/" + c.id)
			if ks, _ := final[c.id]["koji_status"].(map[string]any); ks["reservation"] == "refund-owed" {
				owed++
			}
		}
		if owed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Koji reservations left unrefunded (seed %d)", owed, r.cfg.seed)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stuck := 0
	for _, c := range composes {
		if ks, _ := final[c.id]["koji_status"].(map[string]any); ks["reservation"] == "refund-stuck" {
			stuck++
		}
	}
	if m := r.metric("kib_koji_unrefunded_reservations"); int(m) != stuck {
		t.Errorf("kib_koji_unrefunded_reservations = %v, want %d (the composes reporting refund-stuck)", m, stuck)
	}

	// Settlement on the hub: a successful Koji compose is one complete
	// build; a failed one left a failed (refunded) build or none.
	want := sha256.Sum256([]byte("image x86_64"))
	reader, _ := koji.New(r.hub.URL, koji.Options{})
	var success, failure, imported, refunded, notReserved, lost, plainChecked int
	buildOf := map[int64]string{}
	reasons := map[string]int{}
	for _, c := range composes {
		st := final[c.id]
		ok := st["status"] == "success"
		if ok {
			success++
		} else {
			failure++
			reasons[r.failureReason(c.id, st)]++
		}
		if !c.koji {
			if ok {
				r.checkDownload(c.id, want)
				plainChecked++
			}
			continue
		}
		ks, _ := st["koji_status"].(map[string]any)
		reservation, _ := ks["reservation"].(string)
		b, err := reader.GetBuild(t.Context(), "chaos-1-"+c.release)
		switch {
		case err != nil:
			t.Errorf("compose %s: getBuild: %v", c.id, err)
		case ok:
			if b == nil || b.State != koji.BuildComplete || reservation != "imported" {
				t.Errorf("compose %s succeeded; hub build %+v, reservation %q; want complete, imported", c.id, b, reservation)
				continue
			}
			if prev := buildOf[b.ID]; prev != "" {
				t.Errorf("composes %s and %s share Koji build %d", prev, c.id, b.ID)
			}
			buildOf[b.ID] = c.id
			imported++
			img := filepath.Join(r.hub.Dir, "packages", "chaos", "1", c.release, "images", "chaos-1-"+c.release+".x86_64.tar.xz")
			if got := fileSHA256(t, img); got != hex.EncodeToString(want[:]) {
				t.Errorf("compose %s: imported image sha256 %s, want %x", c.id, got, want)
			}
		case b == nil:
			notReserved++
		case b.State == koji.BuildBuilding && reservation == "refund-stuck":
			// A kill between CGInitBuild and storing its answer: kib has
			// no token, and says so in the status and the metric.
			lost++
		case b.State == koji.BuildFailed && reservation == "refunded":
			refunded++
		default:
			t.Errorf("compose %s failed; hub build state %d, reservation %q; want failed and refunded", c.id, b.State, reservation)
		}
	}
	for name := range r.procs {
		r.stop(name)
	}
	// No process of a killed service outlived it.
	time.Sleep(time.Second)
	if left := processesWith(r.token); len(left) > 0 {
		t.Errorf("orphan processes of killed services: %v", left)
	}
	if success == 0 {
		t.Errorf("no compose succeeded: the run shows nothing (seed %d)", r.cfg.seed)
	}
	t.Logf("chaos %s remote-workers=%v seed %d: composes %d (koji %d), kills %v, outages %d, cuts %d; final: success %d, failure %d; koji imported %d, refunded %d, never reserved %d, lost with a killed process (reported refund-stuck) %d; plain artifacts checked %d; duplicates: 0 of %d builds; failures by reason %v",
		backend, r.remote, r.cfg.seed, len(composes), (len(composes)+1)/2, r.kills, r.cfg.outages, r.cfg.cuts, success, failure, imported, refunded, notReserved, lost, plainChecked, len(buildOf), reasons)
}

func (r *chaosRun) start(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.procs[name]
	cmd := exec.Command(r.bin, p.args...)
	cmd.Env = append(os.Environ(), "KIB_CHAOS_TOKEN="+r.token)
	// kib itself gets no PID namespace: the test checks that kib's own
	// children die with it. Pdeathsig only spares the machine a kib that
	// outlives a crashed test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = r.logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "kib ") {
		cmd.Process.Kill()
		cmd.Wait()
		r.t.Fatalf("%s did not start: %q, %v", name, line, err)
	}
	go io.Copy(io.Discard, out)
	p.cmd, p.errc = cmd, make(chan error, 1)
	go func() { p.errc <- cmd.Wait() }()
}

// kill SIGKILLs one kib process (only kib, not its process group).
func (r *chaosRun) kill(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.procs[name]
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.errc
	p.cmd = nil
}

// stop ends a kib process as an operator would.
func (r *chaosRun) stop(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.procs[name]
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.errc:
	case <-time.After(40 * time.Second):
		r.t.Errorf("%s did not stop within 40s of SIGTERM", name)
		p.cmd.Process.Kill()
		<-p.errc
	}
	p.cmd = nil
}

// do sends an API request, retrying while the service restarts.
func (r *chaosRun) do(method, path, body string) (int, []byte) {
	for i := 0; ; i++ {
		req, _ := http.NewRequest(method, "http://"+r.addr+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, b
		}
		if i == 200 {
			r.t.Fatalf("%s %s: %v", method, path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *chaosRun) getJSON(path string) map[string]any {
	code, b := r.do("GET", path, "")
	var m map[string]any
	if code != 200 || json.Unmarshal(b, &m) != nil {
		r.t.Fatalf("GET %s: %d %s", path, code, b)
	}
	return m
}

func (r *chaosRun) submit(i int) composeRef {
	c := composeRef{koji: i%2 == 0, release: fmt.Sprintf("r%d", i)}
	body := `{"distribution":"debian-12","image_request":{"architecture":"x86_64","image_type":"tar","repositories":[]}}`
	if c.koji {
		body = fmt.Sprintf(`{"distribution":"debian-12","koji":{"name":"chaos","version":"1","release":%q,"server":%q,"task_id":%d},"image_requests":[{"architecture":"x86_64","image_type":"tar","repositories":[{"baseurl":"http://deb.debian.org/debian","rhsm":false}]}]}`,
			c.release, r.kojiURL, 1000+i)
	}
	// A POST whose answer a kill cut off may have created the compose, so
	// the suite does not resubmit: it waits for the service instead.
	code, b := r.do("POST", "/api/image-builder-composer/v2/compose", body)
	var m map[string]any
	if code != 201 || json.Unmarshal(b, &m) != nil {
		r.t.Fatalf("POST /compose: %d %s", code, b)
	}
	c.id, _ = m["id"].(string)
	return c
}

func (r *chaosRun) metric(name string) float64 {
	_, b := r.do("GET", "/metrics", "")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	r.t.Fatalf("metric %s missing", name)
	return 0
}

func (r *chaosRun) checkDownload(id string, want [32]byte) {
	logs := r.getJSON("/api/image-builder-composer/v2/composes/" + id + "/logs")
	builds, _ := logs["image_builds"].([]any)
	var recorded string
	if len(builds) == 1 {
		arts, _ := builds[0].(map[string]any)["artifacts"].([]any)
		for _, a := range arts {
			if m := a.(map[string]any); m["kind"] == "image" {
				recorded, _ = m["sha256"].(string)
			}
		}
	}
	code, b := r.do("GET", "/api/image-builder-composer/v2/composes/"+id+"/download", "")
	got := sha256.Sum256(b)
	if code != 200 || hex.EncodeToString(got[:]) != recorded || got != want {
		r.t.Errorf("compose %s: download %d, sha256 %x; recorded %s, built %x", id, code, got, recorded, want)
	}
}

// failureReason is the first image error of a failed compose, for the
// figures.
func (r *chaosRun) failureReason(id string, st map[string]any) string {
	is, _ := st["image_status"].(map[string]any)
	e, _ := is["error"].(map[string]any)
	if e == nil {
		// The images were built; koji-finalize failed.
		logs := r.getJSON("/api/image-builder-composer/v2/composes/" + id + "/logs")
		k, _ := logs["koji"].(map[string]any)
		imp, _ := k["import"].(map[string]any)
		e, _ = imp["job_error"].(map[string]any)
		if e == nil {
			return "no error recorded"
		}
		return fmt.Sprintf("koji-finalize: %v: %.200v", e["reason"], e["details"])
	}
	reason := fmt.Sprint(e["reason"])
	if d, ok := e["details"].([]any); ok && len(d) > 0 {
		if m, ok := d[0].(map[string]any); ok {
			reason += fmt.Sprintf(": %v: %.300v", m["reason"], m["details"])
		}
	}
	return reason
}

func fileSHA256(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Error(err)
		return ""
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// processesWith returns the pids whose command line contains s.
func processesWith(s string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

var (
	chaosOnce sync.Once
	chaosBin  string
	chaosErr  error
)

// chaosKib builds kib with the chaos tag once per test binary, into a
// directory TestMain removes.
func chaosKib(t *testing.T) string {
	chaosOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kib-chaos-")
		if err != nil {
			chaosErr = err
			return
		}
		chaosBin = filepath.Join(dir, "kib")
		if out, err := exec.Command("go", "build", "-tags", "chaos", "-o", chaosBin, ".").CombinedOutput(); err != nil {
			chaosErr = fmt.Errorf("go build -tags chaos: %v\n%s", err, out)
		}
	})
	if chaosErr != nil {
		t.Fatal(chaosErr)
	}
	return chaosBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chaosBin != "" {
		os.RemoveAll(filepath.Dir(chaosBin))
	}
	os.Exit(code)
}

// TestServeKilledMidBuild SIGKILLs kib serve while a Koji compose's build
// runs a host command: the command dies with kib, and the restarted
// service retries the build long before --rescue-after, so the compose
// succeeds and the Koji build is imported once.
func TestServeKilledMidBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kib serve processes; run without -short")
	}
	bin := chaosKib(t)
	// The first build's host command would run for ten minutes: it must
	// die with kib, not when it ends.
	t.Setenv("KIB_CHAOS_BUILD_TIME", "10m")
	r := &chaosRun{t: t, bin: bin, rng: rand.New(rand.NewPCG(1, 2)), cfg: chaosConfig{deadline: 2 * time.Minute}}
	r.setup("sqlite")
	c := r.submit(0)
	deadline := time.Now().Add(time.Minute)
	for len(processesWith(r.token)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the build's host command did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.kill("serve")
	deadline = time.Now().Add(5 * time.Second)
	for left := processesWith(r.token); len(left) > 0; left = processesWith(r.token) {
		if time.Now().After(deadline) {
			t.Fatalf("the build's processes outlived the killed kib serve: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Setenv("KIB_CHAOS_BUILD_TIME", "200ms")
	r.start("serve")
	var st map[string]any
	for deadline = time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		st = r.getJSON("/api/image-builder-composer/v2/composes/" + c.id)
		if st["status"] != "pending" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the compose did not finish after the restart")
		}
	}
	ks, _ := st["koji_status"].(map[string]any)
	if st["status"] != "success" || ks["reservation"] != "imported" {
		t.Fatalf("compose %v", st)
	}
	imports := 0
	for _, m := range r.hub.Calls() {
		if m == "CGImport" {
			imports++
		}
	}
	if imports != 1 {
		t.Errorf("CGImport called %d times, want 1", imports)
	}
	r.stop("serve")
}
