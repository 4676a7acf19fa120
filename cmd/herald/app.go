package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/metrics"
	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/all"
)

// IO is everything a command touches outside itself, injected so commands can be tested
// with buffers.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Now            func() time.Time
	// StdinTTY and StderrTTY say whether those streams are terminals.
	StdinTTY, StderrTTY bool
	// Signals receives SIGINT/SIGTERM (nil: none).
	Signals <-chan os.Signal
	// Exit ends the process at once (a second Ctrl-C).
	Exit func(code int)
}

func newSystemIO() *IO {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	// A Go program dies of SIGPIPE on a write to a closed pipe on fd 1 or 2 unless it
	// handles SIGPIPE itself (os/signal, "SIGPIPE"); with the signal notified, the write
	// returns EPIPE instead, and the run goes on (`herald send … 2>&1 | head`). The
	// channel is never read: signals that do not fit are dropped.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	return &IO{
		Stdin: os.Stdin, Stdout: &dropOnError{w: os.Stdout}, Stderr: &dropOnError{w: os.Stderr},
		Getenv:    os.Getenv,
		Now:       time.Now,
		StdinTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		StderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
		Signals:   sig,
		Exit:      os.Exit,
	}
}

// dropOnError writes to w until a write fails (a closed pipe, a full disk), then drops
// everything: output for a human or a pipe must never stop a run. It never returns an
// error. It is safe for concurrent use.
type dropOnError struct {
	mu     sync.Mutex
	w      io.Writer
	failed bool
}

func (d *dropOnError) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.failed {
		if _, err := d.w.Write(p); err != nil {
			d.failed = true
		}
	}
	return len(p), nil
}

// Exit codes (PRODUCT.md "Exit codes and output").
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// usageError marks bad flags or arguments.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }

// exitError carries an exit code for a run that completed but must not exit 0 (some
// recipients failed); the summary has been printed already.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// exitCode maps an error to the process's exit code: the one place that decides.
func exitCode(err error) int {
	var ee *exitError
	var ue *usageError
	var ce *campaign.ConfigError
	var se *campaign.StopError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	case errors.As(err, &se) && se.Reason == campaign.StopInterrupted:
		return exitInterrupted
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	}
	return exitFailed
}

type app struct {
	io  *IO
	ran bool
	// sending is set by commands that hand messages to a provider (send, schedule), so
	// that a stop says what it waits for.
	sending    atomic.Bool
	cpuProfile string
	stopProf   func()
	registry   providers.Registry

	// obs are --log-format, --log-level and --metrics-addr; log and metrics are set up
	// from them before a command runs (observe.go).
	obs        observeFlags
	log        *slog.Logger
	metrics    *metrics.Metrics
	metricsSrv *metrics.Server
}

func (a *app) env() campaign.Env {
	return campaign.Env{Registry: a.registry, Getenv: a.io.Getenv, Now: a.io.Now, Warnf: a.warnf}
}

func (a *app) warnf(format string, args ...any) {
	if a.log != nil {
		a.log.Warn(fmt.Sprintf(format, args...))
		return
	}
	fmt.Fprintf(a.io.Stderr, "herald: warning: "+format+"\n", args...)
}

func (a *app) infof(format string, args ...any) {
	if a.log != nil {
		a.log.Info(fmt.Sprintf(format, args...))
		return
	}
	fmt.Fprintf(a.io.Stderr, format+"\n", args...)
}

// memoryLimit is the soft limit of the Go heap when GOMEMLIMIT is not set. herald's
// live heap is small (a million-row list needs about 16 MiB to find duplicates); the
// limit makes the garbage collector keep the rest of the heap near it instead of
// letting it double, so that a run over a million rows stays under 64 MiB resident.
// It is soft: a larger live heap is never refused.
const memoryLimit = 40 << 20

// Main runs herald with args and returns the exit code.
func Main(args []string, sys *IO) (code int) {
	defer func() {
		// A bug must not greet the user with a stack trace; HERALD_DEBUG=1 shows it.
		if r := recover(); r != nil {
			if sys.Getenv("HERALD_DEBUG") != "" {
				panic(r)
			}
			fmt.Fprintf(sys.Stderr, "herald: internal error: %v (run again with HERALD_DEBUG=1 for details, and please report it)\n", r)
			code = exitFailed
		}
	}()
	if sys.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	a := &app{io: sys, registry: all.Registry()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	if sys.Signals != nil {
		go func() {
			select {
			case <-sys.Signals:
			case <-ctx.Done():
				return
			}
			sending := a.sending.Load()
			if sending {
				fmt.Fprintln(sys.Stderr, "\nherald: stopping: finishing the messages in flight (Ctrl-C again to quit at once)")
			} else {
				fmt.Fprintln(sys.Stderr, "\nherald: stopping (Ctrl-C again to quit at once)")
			}
			cancel()
			select {
			case <-sys.Signals:
				if sending {
					fmt.Fprintln(sys.Stderr, "herald: quit; the journal is consistent, re-run to resume")
				} else {
					fmt.Fprintln(sys.Stderr, "herald: quit")
				}
				sys.Exit(exitInterrupted)
			case <-finished:
			}
		}()
	}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(sys.Stdin)
	root.SetOut(sys.Stdout)
	root.SetErr(sys.Stderr)
	err := root.ExecuteContext(ctx)
	a.stopObserving()
	if a.stopProf != nil {
		a.stopProf()
	}
	if err == nil {
		return exitOK
	}
	if !a.ran {
		// cobra found no command to run or could not parse the arguments.
		err = &usageError{err: err}
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		if a.log != nil {
			a.log.Error(err.Error(), "exit", exitCode(err))
		} else {
			fmt.Fprintf(sys.Stderr, "herald: %v\n", err)
		}
	}
	return exitCode(err)
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Send email campaigns from a subscriber CSV and a template",
		Version:       readBuildInfo().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.ran = true
			if err := a.startObserving(cmd); err != nil {
				return err
			}
			return a.startProfile()
		},
	}
	root.SetVersionTemplate("herald {{.Version}}\n")
	root.PersistentFlags().StringVar(&a.cpuProfile, "cpuprofile", "", "write a CPU profile to this file (for measuring herald itself)")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{err: fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(a.initCmd(), a.validateCmd(), a.previewCmd(), a.sendCmd(), a.statusCmd(),
		a.suppressCmd(), a.scheduleCmd(), a.serveCmd(), a.storeCmd(), a.versionCmd(), a.docsCmd())
	root.AddCommand(a.bouncesCmd(), a.dnsCmd())
	a.addObserveFlags(root)
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			// cobra's completion command prints its help for an unknown shell and exits 0.
			c.Args = args(cobra.NoArgs)
			c.RunE = func(c *cobra.Command, _ []string) error {
				return &usageError{err: fmt.Errorf("completion: name a shell: bash, zsh, fish or powershell")}
			}
		}
	}
	applyHelp(root)
	completeCampaignFiles(root)
	return root
}

// args wraps a cobra positional-args check into a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if err := check(c, a); err != nil {
			return &usageError{err: fmt.Errorf("%s: %w", c.CommandPath(), err)}
		}
		return nil
	}
}

// startProfile starts the hidden --cpuprofile.
func (a *app) startProfile() error {
	if a.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(a.cpuProfile)
	if err != nil {
		return &usageError{err: err}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	a.stopProf = func() { pprof.StopCPUProfile(); f.Close() }
	return nil
}

func (a *app) load(path string) (*campaign.Campaign, error) {
	return campaign.Load(path, a.io.Now())
}
