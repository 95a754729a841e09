package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/archive/web"
	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/metrics"
	"github.com/sclgate/sclgate/proxy"
	"github.com/sclgate/sclgate/safeio"
	"github.com/sclgate/sclgate/scorer"
	"github.com/sclgate/sclgate/update"
	"github.com/sclgate/sclgate/weights"
)

// cmdServe implements "sclgate serve": run the gateway until SIGTERM or
// SIGINT; SIGHUP re-reads the configuration.
func cmdServe(e env, args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	configFile := fs.String("config", "", "configuration `FILE` (default: the embedded defaults)")
	check := fs.Bool("check", false, "validate the configuration (and the files it names) and exit")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate serve [-config FILE] [-check]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err, 2)
	}
	if fs.NArg() > 0 {
		// "serve /etc/sclgate/sclgate.yaml" (without -config) would
		// otherwise run, or -check pass, on the embedded defaults, and the
		// flag parser drops every flag after the first argument too.
		fmt.Fprintf(e.stderr, "sclgate serve: unexpected argument %q (the configuration file goes after -config)\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))

	cfg, err := config.Load(*configFile)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return 1
	}
	if *check {
		err := checkFiles(cfg, func(format string, args ...any) {
			fmt.Fprintf(e.stderr, "warning: "+format+"\n", args...)
		})
		if err != nil {
			fmt.Fprintln(e.stderr, err)
			return 1
		}
		fmt.Fprintf(e.stdout, "%s: configuration OK\n", sourceName(cfg))
		return 0
	}

	g, err := startGateway(cfg, log)
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate serve:", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		var sig os.Signal
		select {
		case sig = <-sigs:
		case err := <-g.failed:
			// The SMTP listener is gone: exit non-zero so that systemd
			// (Restart=on-failure) starts a fresh one, rather than a
			// process that looks alive and accepts nothing.
			log.Error("smtp server failed; exiting", slog.Any("err", err))
			g.shutdown()
			return 1
		}
		if sig == syscall.SIGHUP {
			if err := g.reload(*configFile); err != nil {
				log.Error("reload failed; previous configuration stays in force", slog.Any("err", err))
			}
			continue
		}
		log.Info("shutting down", slog.String("signal", sig.String()), slog.Duration("bound", g.cfg().Limits.ShutdownTimeout))
		if err := g.shutdown(); err != nil {
			log.Warn("shutdown bound reached; remaining sessions cut off", slog.Any("err", err))
		}
		return 0
	}
}

// checkFiles checks what "serve -check" checks beyond the YAML: that the
// weight list parses, and the TLS key pair and the downstream's CA
// certificates load. What serve would run
// with but the admin should know of goes to warn.
func checkFiles(cfg *config.Config, warn func(format string, args ...any)) error {
	if f := cfg.Filter.WeightsFile; f != "" {
		if st, err := os.Stat(filepath.Dir(f)); err != nil || !st.IsDir() {
			return fmt.Errorf("%s: directory %s does not exist", cfg.Where("filter", "weights_file"), filepath.Dir(f))
		}
		// serve takes a missing file for no rules, and loads it when it
		// appears, so that a lost file never stops mail (the units in
		// deploy/ run this check before every start); but a typo in the
		// path would silently drop every rule, so the check says so.
		if _, err := weights.Load(f); errors.Is(err, os.ErrNotExist) {
			warn("%s: %s does not exist: serve will run without custom weights until it appears", cfg.Where("filter", "weights_file"), f)
		} else if err != nil {
			return err
		}
	}
	if err := checkMakeDir(cfg.Archive.Dir); err != nil {
		// serve creates it at start, and would fail there.
		return fmt.Errorf("%s: %w", cfg.Where("archive", "dir"), err)
	}
	if _, err := loadTLS(cfg); err != nil {
		return err
	}
	if _, err := downstreamOptions(cfg, 0, nil, nil); err != nil {
		return err
	}
	d, err := loadDefinitions(cfg)
	if err != nil && d == nil {
		return err
	} else if err != nil {
		// serve runs on the built-in definitions then, so that mail
		// flows; but the admin meant the installed ones to score.
		warn("definitions: %v: serve will score with the built-in %s until this is mended (sclgate update status says what to do)", err, builtinVersion())
	}
	if _, _, err := classifier(cfg, d, nil); err != nil {
		return err
	}
	if cfg.Updates.Enabled {
		if _, err := update.LoadKeys(cfg.Updates.TrustedKeys); err != nil {
			return fmt.Errorf("%s: %w", cfg.Where("updates", "trusted_keys"), err)
		}
	}
	return nil
}

// sourceName names the configuration's file for messages.
func sourceName(cfg *config.Config) string {
	if cfg.Source == "" {
		return "embedded defaults"
	}
	return cfg.Source
}

// checkMakeDir says whether dir is a directory, or one MkdirAll can make:
// its nearest existing ancestor is a directory this process may write in.
func checkMakeDir(dir string) error {
	if dir == "" {
		return nil
	}
	p := filepath.Clean(dir)
	for {
		st, err := os.Stat(p)
		switch {
		case err == nil && st.IsDir() && p == filepath.Clean(dir):
			return nil
		case err == nil && st.IsDir():
			if syscall.Access(p, 2 /* W_OK */) != nil {
				return fmt.Errorf("%s does not exist, and %s is not writable to create it in", dir, p)
			}
			return nil
		case err == nil:
			return fmt.Errorf("%s is not a directory", p)
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

func loadTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.TLS.CertFile == "" {
		return nil, nil
	}
	// Read without blocking on a FIFO (tls.LoadX509KeyPair would wait for
	// a writer for ever, and serve -check with it).
	certPEM, err := safeio.ReadFile(cfg.TLS.CertFile, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("tls", "cert_file"), err)
	}
	keyPEM, err := safeio.ReadFile(cfg.TLS.KeyFile, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("tls", "key_file"), err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls says "tls: ..." and names neither file.
		return nil, fmt.Errorf("%s: %s and %s: %s", cfg.Where("tls", "cert_file"), cfg.TLS.CertFile, cfg.TLS.KeyFile, strings.TrimPrefix(err.Error(), "tls: "))
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// downstreamOptions is how sclgate talks to cfg's downstream, keeping a
// connection idle for the next message as long as idle says (0: one per
// delivery). A downstream_tls.ca_file that does not load is an error that
// names the file and the key. log and m may be nil.
func downstreamOptions(cfg *config.Config, idle time.Duration, log *slog.Logger, m *metrics.Metrics) (proxy.DownstreamOptions, error) {
	o := proxy.DownstreamOptions{
		Hostname:   proxy.Hostname(cfg),
		Timeout:    cfg.Limits.DownstreamTimeout,
		Idle:       idle,
		TLSMode:    cfg.DownstreamTLS.Mode,
		ServerName: cfg.DownstreamTLS.ServerName,
		Log:        log,
		Metrics:    m,
	}
	if f := cfg.DownstreamTLS.CAFile; f != "" {
		pem, err := safeio.ReadFile(f, 16<<20)
		if err != nil {
			return o, fmt.Errorf("%s: %w", cfg.Where("downstream_tls", "ca_file"), err)
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(pem) {
			return o, fmt.Errorf("%s: %s: no PEM certificate in it", cfg.Where("downstream_tls", "ca_file"), f)
		}
	}
	return o, nil
}

// gateway is one running sclgate: the SMTP server, the metrics endpoint and
// the weight list watcher, wired together.
type gateway struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	server  *proxy.Server
	smtpLn  net.Listener
	httpSrv *http.Server
	httpLn  net.Listener
	webSrv  *http.Server // the archive manager's page, if archive.web.listen
	served  sync.WaitGroup
	failed  chan error // the SMTP server stopped on its own
	// draining: shutdown has begun; /healthz says so (503), so that a
	// load balancer checking it sends no more clients, which the SMTP
	// port would turn away with 421 until the sessions in flight end.
	draining atomic.Bool

	// reloadMu makes a SIGHUP reload and a definitions switch take
	// turns: each builds the next policy from what the other left.
	reloadMu sync.Mutex

	mu       sync.Mutex // guards the fields below
	watcher  *weights.Watcher
	wpath    string
	defs     *definitions // the filter definitions in use
	defsLink string       // definitions.dir's activeStamp when defs were loaded

	// The downstream of the last policy built, and what it was built
	// from: a rebuild (SIGHUP, a definitions switch) that leaves these
	// alone keeps it, with its connections kept for reuse.
	ds     proxy.Downstream
	dsFrom config.Downstream
	dsOpts proxy.DownstreamOptions

	stop context.CancelFunc // ends the background loops (definitions, retention, updates)
	bg   *sync.WaitGroup    // the background loops, for stopBackground to wait on
	web  *web.Server        // the archive manager's page, if archive.web.listen

	// started is the configuration serve started with: what the
	// listeners run on until a restart, whatever reloads said since.
	started *config.Config
}

func startGateway(cfg *config.Config, log *slog.Logger) (*gateway, error) {
	reg := prometheus.NewRegistry()
	g := &gateway{log: log, metrics: metrics.New(reg, version), failed: make(chan error, 1), started: cfg}
	tlsConfig, err := loadTLS(cfg)
	if err != nil {
		return nil, err
	}
	d, link, err := g.readDefinitions(cfg)
	if err != nil {
		return nil, err
	}
	g.setDefinitions(d, link)
	p, err := g.policy(cfg, d, false)
	if err != nil {
		return nil, err
	}
	g.server = proxy.New(p, proxy.Options{Logger: log, Metrics: g.metrics, TLS: tlsConfig})

	if g.smtpLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		g.closeWatcher()
		return nil, err
	}
	if cfg.Metrics.Listen != "" {
		if g.httpLn, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			g.smtpLn.Close()
			g.closeWatcher()
			return nil, err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			if g.draining.Load() {
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		g.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		g.served.Add(1)
		go func() {
			defer g.served.Done()
			g.httpSrv.Serve(g.httpLn)
		}()
	}
	if cfg.Archive.Web.Listen != "" {
		if err := g.startWeb(cfg); err != nil {
			g.smtpLn.Close()
			if g.httpLn != nil {
				g.httpLn.Close()
			}
			g.closeWatcher()
			return nil, err
		}
	}
	g.served.Add(1)
	go func() {
		defer g.served.Done()
		if err := g.server.Serve(g.smtpLn); err != nil {
			g.failed <- err
		}
	}()
	attrs := []any{slog.String("listen", g.smtpLn.Addr().String()), slog.String("downstream", cfg.Downstream)}
	if !strings.HasPrefix(cfg.Downstream, "maildir:") {
		attrs = append(attrs, slog.String("downstream_tls", cfg.DownstreamTLS.Mode))
	}
	attrs = append(attrs, slog.String("classifier", cfg.Filter.Classifier), slog.String("config", cfg.Source), slog.String("version", version))
	if g.httpLn != nil {
		attrs = append(attrs, slog.String("metrics", g.httpLn.Addr().String()))
	}
	attrs = append(attrs, slog.String("definitions", g.definitions().Version))
	log.Info("sclgate serving", attrs...)

	g.startBackground(cfg)
	return g, nil
}

// startBackground starts the loops that run beside the SMTP server on
// cfg's settings: the definitions watcher, archive retention and automatic
// updates. A reload that changes their settings stops them and starts
// them again (see reload).
func (g *gateway) startBackground(cfg *config.Config) {
	ctx, stop := context.WithCancel(context.Background())
	wg := new(sync.WaitGroup)
	g.mu.Lock()
	g.stop, g.bg = stop, wg
	// The watcher starts from the version in use, not from what the link
	// says now: a switch made just before (install, then reload) is
	// still noticed.
	link := g.defsLink
	g.mu.Unlock()
	wg.Go(func() { watchDefinitions(ctx, cfg.Definitions.Dir, link, g.definitionsChanged) })
	if cfg.Archive.Dir != "" {
		wg.Go(func() { runRetention(ctx, cfg, g.log) })
	}
	if cfg.Updates.Enabled {
		wg.Go(func() {
			autoUpdate(ctx, cfg, g.log, func(result string) { g.metrics.UpdateChecks.WithLabelValues(result).Inc() })
		})
	}
}

// stopBackground ends the loops startBackground started and waits for
// them. It must not be called with reloadMu held: the definitions watcher
// may be waiting for it.
func (g *gateway) stopBackground() {
	g.mu.Lock()
	stop, wg := g.stop, g.bg
	g.mu.Unlock()
	stop()
	wg.Wait()
}

// backgroundChanged says whether a reload from old to cfg changes what the
// background loops run on.
func backgroundChanged(old, cfg *config.Config) bool {
	return !reflect.DeepEqual(old.Updates, cfg.Updates) || old.Definitions != cfg.Definitions ||
		old.Archive.Dir != cfg.Archive.Dir || old.Archive.Retention != cfg.Archive.Retention || old.Archive.ReleasedRetention != cfg.Archive.ReleasedRetention || old.Archive.StoreSCL != cfg.Archive.StoreSCL
}

// startWeb serves the archive manager's page on archive.web.listen. Its
// Release button uses the same delivery as "sclgate archive release", and
// its explanation scores the message with the policy in force.
func (g *gateway) startWeb(cfg *config.Config) error {
	store, err := archive.Open(cfg.Archive.Dir, archive.Options{StoreSCL: cfg.Archive.StoreSCL})
	if err != nil {
		return err
	}
	log := g.log.With(slog.String("component", "archive-web"))
	// Relative paths in the configuration are taken from here: the web
	// page's advice to run a release by hand names it.
	wd, _ := os.Getwd()
	release := func(ctx context.Context, id, to, user string) error {
		c := g.cfg()
		ds, err := config.ParseDownstream(c.Downstream)
		if err != nil {
			return err
		}
		var rcpts []string
		if to != "" {
			rcpts = []string{to}
		}
		do, err := downstreamOptions(c, 0, log, g.metrics)
		if err != nil {
			return err
		}
		down := proxy.NewDownstream(ds, do)
		// Not the request's context: a browser that goes away must not
		// stop a delivery halfway.
		_, _, err = releaseOne(context.WithoutCancel(ctx), store, c, down, id, rcpts, nil, false, time.Now(), releaseAdvice{web: true, wd: wd, config: c.Source, dir: store.Dir(),
			warn: func(msg string) {
				log.Warn("release record not written", slog.String("user", user), slog.String("detail", msg))
			}})
		return err
	}
	ws := web.New(store, cfg.Archive.Web.Users, release, log)
	g.web = ws
	ws.Explain = func(ctx context.Context, m *scorer.Message) (string, error) {
		sc := g.server.Policy().Scorer // once: a SIGHUP meanwhile must not mix two
		r, err := sc.Score(ctx, m)
		if err != nil {
			return "", err
		}
		rep := r.Report(0) + " (computed now)"
		if fs := sc.Explain(m, r, showFeatures); len(fs) > 0 {
			rep += "; features:"
			for i, c := range fs {
				if i > 0 {
					rep += ","
				}
				rep += fmt.Sprintf(" %+.2f %s", c.Weight, c.Feature)
			}
		}
		return rep, nil
	}
	ln, err := net.Listen("tcp", cfg.Archive.Web.Listen)
	if err != nil {
		return err
	}
	// A release answers when the downstream has, which may take up to
	// three downstream timeouts (releaseFrom): a write deadline shorter
	// than that would cut the admin's page off from a release that then
	// succeeds, and invite a second click.
	g.webSrv = &http.Server{Handler: ws, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: max(2*time.Minute, 3*cfg.Limits.DownstreamTimeout+30*time.Second), IdleTimeout: 2 * time.Minute}
	g.served.Add(1)
	go func() {
		defer g.served.Done()
		g.webSrv.Serve(ln)
	}()
	log.Info("archive web page listening", slog.String("listen", ln.Addr().String()))
	return nil
}

// readDefinitions loads the definitions cfg says to use, with the target
// of definitions.dir/active as it was just before: a fallback to the
// built-in ones is logged, and is no error.
func (g *gateway) readDefinitions(cfg *config.Config) (*definitions, string, error) {
	link := ""
	if cfg.Definitions.Dir != "" {
		link = activeStamp(cfg.Definitions.Dir)
	}
	d, err := loadDefinitions(cfg)
	if d == nil {
		return nil, "", err
	}
	if err != nil {
		g.log.Error("definitions", slog.Any("err", err))
	}
	return d, link, nil
}

// setDefinitions records d as the definitions in use.
func (g *gateway) setDefinitions(d *definitions, link string) {
	g.mu.Lock()
	g.defs, g.defsLink = d, link
	g.mu.Unlock()
	g.metrics.Definitions.Reset()
	g.metrics.Definitions.WithLabelValues(d.Version).Set(1)
}

func (g *gateway) definitions() *definitions {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.defs
}

// definitionsChanged switches to a newly activated version: transactions
// in flight keep the policy (and model) they started with; new ones get
// the new model. No restart, no dropped session.
func (g *gateway) definitionsChanged() {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	cfg := g.cfg()
	old := g.definitions().Version
	d, link, err := g.readDefinitions(cfg)
	if err != nil {
		g.log.Error("definitions changed but could not be loaded; keeping the ones in use", slog.Any("err", err))
		return
	}
	p, err := g.policy(cfg, d, false)
	if err != nil {
		g.log.Error("definitions changed but the policy could not be rebuilt", slog.Any("err", err))
		return
	}
	g.setDefinitions(d, link)
	g.server.SetPolicy(p)
	g.log.Info("definitions switched", slog.String("from", old), slog.String("to", d.Version), slog.String("origin", d.Origin))
}

// policy builds everything a transaction decides with from cfg, reusing the
// weight list watcher when the file is the same; rereadWeights (SIGHUP)
// reads the list again then.
func (g *gateway) policy(cfg *config.Config, d *definitions, rereadWeights bool) (*proxy.Policy, error) {
	c, defsVersion, err := classifier(cfg, d, func(c string, err error) {
		g.metrics.ClassifierErrors.WithLabelValues(c).Inc()
		g.log.Warn("classifier failed", slog.String("classifier", c), slog.Any("err", err))
	})
	if err != nil {
		return nil, err
	}
	if fb, ok := c.(*scorer.Fallback); ok {
		// The external engine's error series starts at 0, so that an
		// alert on its rate works from the first scrape.
		g.metrics.ClassifierErrors.WithLabelValues(fb.Primary.Name())
	}
	ds, err := config.ParseDownstream(cfg.Downstream)
	if err != nil {
		return nil, err
	}
	do, err := downstreamOptions(cfg, cfg.Limits.DownstreamIdle, g.log.With(slog.String("component", "downstream")), g.metrics)
	if err != nil {
		return nil, err
	}
	var store *archive.Store
	if cfg.Archive.Dir != "" {
		if store, err = archive.Open(cfg.Archive.Dir, archive.Options{StoreSCL: cfg.Archive.StoreSCL}); err != nil {
			// On a reload this is the only word the admin gets: name
			// the file and the key, as a validation error does.
			return nil, fmt.Errorf("%s: %w", cfg.Where("archive", "dir"), err)
		}
	}
	w, err := g.weightsWatcher(cfg.Filter.WeightsFile, rereadWeights)
	if err != nil {
		return nil, err
	}
	sc := &scorer.Scorer{Classifier: c, Definitions: defsVersion}
	if w != nil {
		sc.Weights = w.Current
	}
	return &proxy.Policy{
		Config:     cfg,
		Scorer:     sc,
		Archive:    store,
		Downstream: g.downstream(ds, do),
	}, nil
}

// downstream returns the downstream ds with options o: the one the last
// policy had when neither changed (a new one would start without the
// connections kept for reuse, and leave those to their idle timers), else
// a new one; the one it replaces gives up its kept connections (sessions
// still on the old policy dial again).
func (g *gateway) downstream(ds config.Downstream, o proxy.DownstreamOptions) proxy.Downstream {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ds != nil && ds == g.dsFrom && sameDownstreamOptions(o, g.dsOpts) {
		return g.ds
	}
	if c, ok := g.ds.(io.Closer); ok {
		c.Close()
	}
	g.ds, g.dsFrom, g.dsOpts = proxy.NewDownstream(ds, o), ds, o
	return g.ds
}

func sameDownstreamOptions(a, b proxy.DownstreamOptions) bool {
	sameCAs := a.RootCAs == nil && b.RootCAs == nil || a.RootCAs != nil && a.RootCAs.Equal(b.RootCAs)
	a.RootCAs, b.RootCAs = nil, nil
	a.Log, b.Log = nil, nil // a new logger each time, saying the same
	return sameCAs && a == b
}

func (g *gateway) weightsWatcher(path string, reread bool) (*weights.Watcher, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if path == g.wpath {
		if g.watcher != nil && reread {
			// SIGHUP re-reads the list too, for file systems where
			// change notification does not reach us (NFS, some mounts).
			// A failure is logged (and counted) by the watcher, as for
			// a change it notices itself.
			g.watcher.Reload()
		}
		return g.watcher, nil
	}
	var w *weights.Watcher
	if path != "" {
		var err error
		w, err = weights.NewWatcher(path, weights.WatcherOptions{
			Logger: g.log,
			OnReload: func(l *weights.List, err error) {
				if err != nil {
					g.metrics.WeightsReloads.WithLabelValues("error").Inc()
					return
				}
				g.metrics.WeightsReloads.WithLabelValues("ok").Inc()
				g.metrics.WeightsEntries.Set(float64(l.Len()))
			},
		})
		if err != nil {
			return nil, err
		}
		g.metrics.WeightsEntries.Set(float64(w.Current().Len()))
	} else {
		g.metrics.WeightsEntries.Set(0)
	}
	if g.watcher != nil {
		g.watcher.Close()
	}
	g.watcher, g.wpath = w, path
	return w, nil
}

func (g *gateway) closeWatcher() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.watcher != nil {
		g.watcher.Close()
		g.watcher, g.wpath = nil, ""
	}
}

func (g *gateway) cfg() *config.Config { return g.server.Policy().Config }

// reload re-reads the configuration file and the weight list (SIGHUP).
// Settings of the listener itself (listen, restartOnly, TLS, PROXY
// protocol, metrics.listen) need a restart; the rest applies from the
// next transaction.
func (g *gateway) reload(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	old := g.cfg()
	restart := backgroundChanged(old, cfg)
	if restart {
		// Before reloadMu: the definitions watcher may be waiting for it.
		g.stopBackground()
	}
	err = g.apply(old, cfg)
	switch {
	case restart && err != nil:
		g.startBackground(old)
	case restart:
		g.startBackground(cfg)
		g.log.Info("definitions watcher, archive retention and automatic updates restarted on the new settings",
			slog.Bool("updates", cfg.Updates.Enabled), slog.String("definitions_dir", cfg.Definitions.Dir))
	}
	return err
}

// apply puts cfg in force in place of old, or nothing when it fails.
func (g *gateway) apply(old, cfg *config.Config) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	d := g.definitions()
	g.mu.Lock()
	link := g.defsLink
	g.mu.Unlock()
	if old.Definitions != cfg.Definitions {
		// Score with what the new definitions.dir holds, as a start
		// would; kept only if the whole configuration loads.
		var err error
		if d, link, err = g.readDefinitions(cfg); err != nil {
			return err
		}
	}
	p, err := g.policy(cfg, d, true)
	if err != nil {
		return err
	}
	g.setDefinitions(d, link)
	g.server.SetPolicy(p)
	// Against what the listeners run on, not the last reload: a setting
	// put back as it was at start needs no restart.
	if changed := restartOnly(g.started, cfg, g.web != nil); len(changed) > 0 {
		msg := "changed settings that apply only after a restart: " + strings.Join(changed, ", ") + "; the other settings apply now"
		if slices.Contains(changed, "hostname") {
			msg += " (a new hostname is in Received fields now, in the greeting after the restart)"
		}
		if slices.Contains(changed, "archive.dir") {
			msg += " (mail is archived into the new archive.dir now; the web page shows the old one until the restart)"
		}
		g.log.Warn(msg, slog.Any("settings", changed))
	}
	// The TLS files are read only at start: checked at every reload (a
	// renewal rewrites them in place, under the same names), so that a
	// pair that does not load is found now, not at the next restart,
	// when the gateway would not start.
	if _, err := loadTLS(cfg); err != nil {
		g.log.Error("the tls files do not load now: sclgate will not start with them; fix them before a restart", slog.Any("err", err))
	}
	if g.web != nil && !maps.Equal(old.Archive.Web.Users, cfg.Archive.Web.Users) {
		g.web.SetUsers(cfg.Archive.Web.Users)
		g.log.Info("archive web: users changed; sessions of removed users and changed passwords ended", slog.Int("users", len(cfg.Archive.Web.Users)))
	}
	g.log.Info("configuration reloaded", slog.String("config", cfg.Source), slog.Any("changed", config.Changed(old, cfg)),
		slog.Int("gateway_threshold", cfg.Filter.GatewayThreshold), slog.String("gateway_action", cfg.Filter.GatewayAction))
	return nil
}

// restartOnly names the settings of cfg that differ from st, what the
// listeners started with, and take effect only at a restart (archive.dir
// only for the web page, which web says runs).
func restartOnly(st, cfg *config.Config, web bool) []string {
	var names []string
	add := func(differ bool, name string) {
		if differ {
			names = append(names, name)
		}
	}
	add(st.Listen != cfg.Listen, "listen")
	add(st.Hostname != cfg.Hostname, "hostname")
	add(st.Limits.MaxMessageBytes != cfg.Limits.MaxMessageBytes, "limits.max_message_bytes")
	add(st.Limits.MaxConnections != cfg.Limits.MaxConnections, "limits.max_connections")
	add(st.Limits.MaxConnectionsPerIP != cfg.Limits.MaxConnectionsPerIP, "limits.max_connections_per_ip")
	add(st.Limits.CommandTimeout != cfg.Limits.CommandTimeout, "limits.command_timeout")
	add(st.TLS != cfg.TLS, "tls")
	add(fmt.Sprint(st.ProxyProtocol) != fmt.Sprint(cfg.ProxyProtocol), "proxy_protocol")
	add(st.Metrics != cfg.Metrics, "metrics.listen")
	add(st.Archive.Web.Listen != cfg.Archive.Web.Listen, "archive.web.listen")
	add(web && st.Archive.Dir != cfg.Archive.Dir, "archive.dir")
	return names
}

// shutdown stops accepting, lets transactions in flight finish within
// limits.shutdown_timeout, then stops everything.
func (g *gateway) shutdown() error {
	g.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg().Limits.ShutdownTimeout)
	defer cancel()
	// The background loops end alongside the SMTP shutdown, not before
	// it: one may be loading definitions or finishing an install step,
	// and that wait must neither come out of the time promised to the
	// transactions in flight nor leave the listener taking new sessions.
	bg := make(chan struct{})
	go func() {
		defer close(bg)
		g.stopBackground()
	}()
	err := g.server.Shutdown(ctx)
	<-bg
	hctx, hcancel := context.WithTimeout(context.Background(), 2*time.Second)
	for _, srv := range []*http.Server{g.httpSrv, g.webSrv} {
		if srv != nil {
			srv.Shutdown(hctx)
		}
	}
	hcancel()
	g.served.Wait()
	g.closeWatcher()
	return err
}
