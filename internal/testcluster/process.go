// Package testcluster runs a real regionkv cluster for integration tests:
// the regionkv-scheduler and regionkv-server binaries, built once per test
// binary with `go build`, as separate processes on loopback with free
// ports and temporary data dirs. It starts, stops (SIGTERM), kills (SIGKILL)
// and restarts them, waits for readiness with bounded waits, and offers
// clients that retry the way a real client would.
//
// A test package using it runs its tests through Main:
//
//	func TestMain(m *testing.M) { testcluster.Main(m) }
//
// Every process logs to a file in the test's temp dir; when a test fails,
// the tail of each log is printed.
package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries are the built programs.
type Binaries struct {
	Server, Scheduler string
}

// Tools are the built command-line tools.
type Tools struct {
	Ctl, Bench string
}

var (
	buildOnce sync.Once
	buildDir  string
	bins      Binaries
	buildErr  error

	toolsOnce sync.Once
	tools     Tools
	toolsErr  error
)

// Main runs the tests of a package that uses the cluster and removes the
// built binaries afterwards.
func Main(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Build builds both binaries (once per test binary) and returns them.
func Build(t testing.TB) Binaries {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		bins = Binaries{Server: binPath("regionkv-server"), Scheduler: binPath("regionkv-scheduler")}
		if buildErr = goBuild(bins.Server, bins.Scheduler); buildErr == nil {
			fmt.Fprintf(os.Stderr, "testcluster: built the binaries in %v\n", time.Since(start).Round(time.Millisecond))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bins
}

// BuildTools builds regionkv-ctl and regionkv-bench (once per test binary)
// and returns them.
func BuildTools(t testing.TB) Tools {
	t.Helper()
	toolsOnce.Do(func() {
		start := time.Now()
		tools = Tools{Ctl: binPath("regionkv-ctl"), Bench: binPath("regionkv-bench")}
		if toolsErr = goBuild(tools.Ctl, tools.Bench); toolsErr == nil {
			fmt.Fprintf(os.Stderr, "testcluster: built the tools in %v\n", time.Since(start).Round(time.Millisecond))
		}
	})
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	return tools
}

var (
	buildDirOnce sync.Once
	buildDirErr  error
)

// binPath returns where the program name is built, in a temporary
// directory that Main removes. If that directory cannot be made, the
// returned path is relative and goBuild fails.
func binPath(name string) string {
	buildDirOnce.Do(func() { buildDir, buildDirErr = os.MkdirTemp("", "regionkv-testcluster-") })
	return filepath.Join(buildDir, name)
}

// goBuild builds ./cmd/<name> into each of outs, paths named after their
// programs.
func goBuild(outs ...string) error {
	if buildDirErr != nil {
		return buildDirErr
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	for _, out := range outs {
		pkg := "./cmd/" + filepath.Base(out)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return nil
}

// moduleRoot finds the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("testcluster: not inside the regionkv module")
	}
	return filepath.Dir(mod), nil
}

// Process is one running (or stopped) program.
type Process struct {
	Name    string
	bin     string
	args    []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd's exit status, once done
}

func newProcess(name, bin, logPath string, args []string) *Process {
	return &Process{Name: name, bin: bin, args: args, logPath: logPath}
}

// start runs the program; its output is appended to the log file.
func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return fmt.Errorf("%s is already running", p.Name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), filepath.Base(p.bin), strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// running reports whether the process was started and has not exited.
// Callers hold mu.
func (p *Process) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Running reports whether the process is alive.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// Exited returns a channel closed when the current run exits (nil if it
// never started).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// ExitErr returns how the last run ended (nil: exit status 0).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// signal sends sig and waits up to timeout for the exit; past it the
// process is killed. It reports whether the process exited in time.
func (p *Process) signal(sig syscall.Signal, timeout time.Duration) bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	alive := p.running()
	p.mu.Unlock()
	if !alive {
		return true
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return false
	}
}

// Kill kills the process with SIGKILL (kill -9) and waits for it.
func (p *Process) Kill() { p.signal(syscall.SIGKILL, time.Minute) }

// Stop asks the process to shut down (SIGTERM) and waits up to timeout
// before killing it; it reports whether the shutdown was graceful.
func (p *Process) Stop(timeout time.Duration) bool { return p.signal(syscall.SIGTERM, timeout) }

// Freeze stops the process where it is (SIGSTOP), as a machine that hangs
// does: its sockets stay open and nothing answers. Thaw resumes it.
func (p *Process) Freeze() { p.send(syscall.SIGSTOP) }

// Thaw resumes a frozen process (SIGCONT).
func (p *Process) Thaw() { p.send(syscall.SIGCONT) }

func (p *Process) send(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Log returns the process's log so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// tail returns the last n lines of the log.
func (p *Process) tail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// waitFor polls ready every 50 ms until it succeeds, the process exits, or
// timeout passes.
func (p *Process) waitFor(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	exited := p.Exited()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited (%v) before it was ready: %v", p.Name, p.ExitErr(), last)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %v", p.Name, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
