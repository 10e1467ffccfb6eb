package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/regionkv/regionkv/internal/grpccodec" // the gogo-aware "proto" codec
	"github.com/regionkv/regionkv/kv/client"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// SchedulerEnv names the environment variable that sets the default of
// --scheduler.
const SchedulerEnv = "REGIONKV_SCHEDULER"

// app holds the global flags and the connections a command makes.
type app struct {
	stdout, stderr io.Writer

	schedulers string // --scheduler
	statusAddr string // --status-addr
	output     string // -w
	hex        bool
	escaped    bool
	timeout    time.Duration

	enc    keyEncoding
	ctx    context.Context
	cancel context.CancelFunc
	kv     *client.Client
	http   *http.Client
	base   string // scheduler status API base URL, once known
}

func (a *app) close() {
	if a.kv != nil {
		a.kv.Close()
	}
	if a.cancel != nil {
		a.cancel()
	}
}

func (a *app) rootCommand() *cobra.Command {
	def := os.Getenv(SchedulerEnv)
	if def == "" {
		def = "127.0.0.1:2379"
	}
	root := &cobra.Command{
		Use:   "regionkv-ctl",
		Short: "Command-line client of a regionkv cluster",
		Long: `regionkv-ctl reads and writes data and looks after a regionkv cluster.

Keys and values are text by default, hex with --hex, or text with escapes
(\xHH, \n, \r, \t, \0, \\) with --escaped; output uses the same form.

Exit codes: 0 success, 1 failure (including an unreachable cluster),
2 bad usage or input, 3 not found, 4 write outcome unknown.`,
		Version:           Version,
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: a.setup,
		Args:              noArgs,
		RunE:              groupRun,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usagef("%v", err) })
	f := root.PersistentFlags()
	f.StringVarP(&a.schedulers, "scheduler", "s", def, "scheduler gRPC address(es), comma-separated (env "+SchedulerEnv+")")
	f.StringVar(&a.statusAddr, "status-addr", "", "scheduler status HTTP address (default: asked from the scheduler)")
	f.StringVarP(&a.output, "write-out", "w", "table", "output format: table or json")
	f.BoolVar(&a.hex, "hex", false, "keys and values in hex")
	f.BoolVar(&a.escaped, "escaped", false, `keys and values with escapes: \xHH \n \r \t \0 \\`)
	f.DurationVar(&a.timeout, "timeout", 10*time.Second, "give up on the command after this long")
	root.MarkFlagsMutuallyExclusive("hex", "escaped")

	root.AddCommand(a.dataCommands()...)
	root.AddCommand(a.storeCommand(), a.regionCommand(), a.operatorCommand(), a.schedulerCommand(),
		a.configCommand(), a.healthCommand(), a.memberCommand())
	return root
}

// setup checks the global flags before any command runs.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	switch a.output {
	case "table", "json":
	default:
		return usagef("-w %q: want table or json", a.output)
	}
	switch {
	case a.hex:
		a.enc = encHex
	case a.escaped:
		a.enc = encEscaped
	}
	if a.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if len(a.schedulerAddrs()) == 0 {
		return usagef("--scheduler is empty")
	}
	a.ctx, a.cancel = context.WithTimeout(cmd.Context(), a.timeout)
	a.http = &http.Client{Timeout: a.timeout}
	return nil
}

func (a *app) schedulerAddrs() []string {
	var addrs []string
	for _, s := range strings.Split(a.schedulers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			addrs = append(addrs, s)
		}
	}
	return addrs
}

func (a *app) json() bool { return a.output == "json" }

// noArgs rejects arguments, as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 && !cmd.HasSubCommands() {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// groupRun runs for a command that only groups others: it names them.
func groupRun(cmd *cobra.Command, args []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if len(args) > 0 {
		return usagef("unknown command %q for %q (want one of %s)", args[0], cmd.CommandPath(), strings.Join(names, ", "))
	}
	return usagef("%q needs a command: %s", cmd.CommandPath(), strings.Join(names, ", "))
}

// group returns a command that groups subs.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs, RunE: groupRun}
	c.AddCommand(subs...)
	return c
}

// nArgs accepts between lo and hi arguments, naming them in the error.
func nArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("wrong number of arguments for %q: got %d, want %s (usage: %s)",
				cmd.CommandPath(), len(args), countString(lo, hi), cmd.UseLine())
		}
		return nil
	}
}

func countString(lo, hi int) string {
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d to %d", lo, hi)
}

// client returns the data client, connecting on first use.
func (a *app) client() (*client.Client, error) {
	if a.kv != nil {
		return a.kv, nil
	}
	c, err := client.New(a.ctx, a.schedulerAddrs(), client.Options{RetryUnknownOutcome: true, Timeout: a.timeout})
	if err != nil {
		return nil, err
	}
	a.kv = c
	return c, nil
}

// members asks the scheduler for its members (gRPC GetMembers), trying each
// address.
func (a *app) members() (*schedulerpb.GetMembersResponse, error) {
	var last error
	for _, addr := range a.schedulerAddrs() {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			last = err
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, min(a.timeout, 5*time.Second))
		resp, err := schedulerpb.NewSchedulerClient(conn).GetMembers(ctx, &schedulerpb.GetMembersRequest{}, grpc.WaitForReady(true))
		cancel()
		conn.Close()
		if err == nil && resp.GetHeader().GetError() != nil {
			err = errors.New(resp.Header.Error.Message)
		}
		if err == nil {
			return resp, nil
		}
		last = fmt.Errorf("%s: %w", addr, err)
	}
	return nil, fmt.Errorf("cannot reach the scheduler at %s: %w", a.schedulers, last)
}

// apiBase returns the base URL of the scheduler's status API.
func (a *app) apiBase() (string, error) {
	if a.base != "" {
		return a.base, nil
	}
	addr := a.statusAddr
	if addr == "" {
		m, err := a.members()
		if err != nil {
			return "", err
		}
		if addr = m.GetLeader().GetStatusAddress(); addr == "" {
			return "", errors.New("the scheduler leader has no status address: pass --status-addr")
		}
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	a.base = strings.TrimRight(addr, "/")
	return a.base, nil
}

// api calls the scheduler's JSON API: method on path with body (nil: none),
// decoding the answer into out (nil: discard). A 404 becomes a not-found
// error, other failures carry the API's message.
func (a *app) api(method, path string, body, out any) error {
	base, err := a.apiBase()
	if err != nil {
		return err
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(a.ctx, method, base+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the scheduler's status API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		switch resp.StatusCode {
		case http.StatusNotFound:
			return notFoundf("%s", msg)
		case http.StatusBadRequest:
			return rejectedf("%s", msg)
		}
		return fmt.Errorf("scheduler: %s (HTTP %d)", msg, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("scheduler answered %s %s with %v", method, path, err)
	}
	return nil
}

// printJSON prints v as indented JSON.
func (a *app) printJSON(v any) error {
	if raw, ok := v.(json.RawMessage); ok {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := a.stdout.Write(buf.Bytes())
		return err
	}
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows under a header, aligned.
func (a *app) table(header []string, rows [][]string) error {
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	if header != nil {
		fmt.Fprintln(w, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

// fields prints name: value lines, aligned.
func (a *app) fields(kv ...string) error {
	var rows [][]string
	for i := 0; i+1 < len(kv); i += 2 {
		rows = append(rows, []string{kv[i] + ":", kv[i+1]})
	}
	return a.table(nil, rows)
}
