package testcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regionkv/regionkv/internal/testcluster"
)

// toolRun is the outcome of running a tool.
type toolRun struct {
	stdout, stderr string
	code           int
}

func runTool(t *testing.T, ctx context.Context, bin string, args ...string) toolRun {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := toolRun{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s %q: %v", bin, args, err)
	}
	return r
}

// TestFrontDoor (issue 6): a playground-sized cluster driven by
// regionkv-ctl and regionkv-bench as a user would, checking their output
// and exit codes, bad input included.
func TestFrontDoor(t *testing.T) {
	ctx := integration(t)
	tools := testcluster.BuildTools(t)
	c := testcluster.New(t, testcluster.Options{})
	sched := c.StartScheduler()
	for range 3 {
		c.StartStore()
	}
	ctl := func(args ...string) toolRun {
		t.Helper()
		return runTool(t, ctx, tools.Ctl, append([]string{"--scheduler", sched.Addr}, args...)...)
	}
	mustCtl := func(args ...string) string {
		t.Helper()
		r := ctl(args...)
		if r.code != 0 {
			t.Fatalf("regionkv-ctl %s: exit code %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	wantFail := func(code int, stderr string, r toolRun) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stderr, stderr) {
			t.Errorf("exit code %d, stderr %q; want %d and %q", r.code, r.stderr, code, stderr)
		}
	}

	start := time.Now()
	step := func(what string) {
		t.Logf("%-12s %v", what, time.Since(start).Round(100*time.Millisecond))
		start = time.Now()
	}
	// Ready: the first region gets three voters.
	if out := mustCtl("health", "--wait", "--timeout", "60s"); !strings.Contains(out, "1 regions, each with a leader and 3 voters") {
		t.Fatalf("health:\n%s", out)
	}

	step("ready")

	// Data.
	if out := mustCtl("put", "hello", "world"); out != "OK\n" {
		t.Errorf("put: %q", out)
	}
	mustCtl("put", "hello2", "")
	mustCtl("--escaped", "put", `bin\x00key`, `tab\there`)
	if out := mustCtl("get", "hello"); out != "world\n" {
		t.Errorf("get hello: %q", out)
	}
	if out := mustCtl("--hex", "get", "62696e006b6579"); out != "7461620968657265\n" {
		t.Errorf("get --hex: %q", out)
	}
	wantFail(3, `key "nope" not found`, ctl("get", "nope"))
	out := mustCtl("scan")
	wantScan := "KEY         VALUE\n" + `bin\x00key  tab\there` + "\nhello       world\nhello2      \n"
	if out != wantScan {
		t.Errorf("scan:\n%s\nwant:\n%s", out, wantScan)
	}
	var scan struct {
		Count int `json:"count"`
		Kvs   []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal([]byte(mustCtl("-w", "json", "scan", "hello", "", "--reverse", "--limit", "1")), &scan); err != nil ||
		scan.Count != 1 || scan.Kvs[0].Key != "hello2" {
		t.Errorf("scan -w json --reverse: %+v, %v", scan, err)
	}
	mustCtl("delete", "hello2")
	mustCtl("delete-range", "a", "c")
	if out := mustCtl("scan", "--keys-only"); out != "KEY\nhello\n" {
		t.Errorf("scan after deletes:\n%s", out)
	}

	// Regions and stores.
	var regions struct {
		Regions []struct {
			ID    uint64 `json:"id"`
			Peers []struct {
				StoreID uint64 `json:"store_id"`
			} `json:"peers"`
			Leader struct {
				StoreID uint64 `json:"store_id"`
			} `json:"leader"`
		} `json:"regions"`
	}
	if err := json.Unmarshal([]byte(mustCtl("region", "list", "-w", "json")), &regions); err != nil || len(regions.Regions) != 1 || len(regions.Regions[0].Peers) != 3 {
		t.Fatalf("region list -w json: %+v, %v", regions, err)
	}
	region := regions.Regions[0]
	if out := mustCtl("region", "list"); !strings.Contains(out, "(start)  (end)") {
		t.Errorf("region list:\n%s", out)
	}
	if out := mustCtl("store", "list"); strings.Count(out, "127.0.0.1:") != 3 || !strings.Contains(out, "Up") {
		t.Errorf("store list:\n%s", out)
	}
	if out := mustCtl("region", "key", "hello"); !strings.Contains(out, fmt.Sprintf("id:                %d", region.ID)) {
		t.Errorf("region key hello:\n%s", out)
	}
	if out := mustCtl("member", "list"); !strings.Contains(out, sched.Addr) {
		t.Errorf("member list:\n%s", out)
	}

	step("data, regions")

	// Move the leader by hand and wait for it.
	var to uint64
	for _, p := range region.Peers {
		if p.StoreID != region.Leader.StoreID {
			to = p.StoreID
			break
		}
	}
	id, target := fmt.Sprint(region.ID), fmt.Sprint(to)
	if out := mustCtl("operator", "add", "transfer-leader", id, target, "--wait", "--timeout", "30s"); !strings.Contains(out, "(finished)") {
		t.Errorf("transfer-leader:\n%s", out)
	}
	if out := mustCtl("region", "show", id); !regexp.MustCompile(fmt.Sprintf(`(?m)^leader: +\d+@%d$`, to)).MatchString(out) {
		t.Errorf("region show after the transfer to store %d:\n%s", to, out)
	}
	wantFail(2, "already leads", ctl("operator", "add", "transfer-leader", id, target))
	if out := mustCtl("operator", "list", "--all"); !strings.Contains(out, "admin: transfer leader to store "+target) {
		t.Errorf("operator list --all:\n%s", out)
	}

	step("transfer")

	// A 5-second mixed benchmark: throughput, no errors.
	bench := runTool(t, ctx, tools.Bench, "--scheduler", sched.Addr, "--workload", "mixed", "--duration", "5s",
		"--warmup", "500ms", "--clients", "16", "--keys", "1000", "--preload", "--json")
	var rep struct {
		Ops       int64   `json:"ops"`
		OpsPerSec float64 `json:"ops_per_s"`
		Latency   map[string]struct {
			Count int64 `json:"count"`
			P99   int64 `json:"p99_us"`
		} `json:"latency"`
		Errors struct {
			Total int64 `json:"total"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(bench.stdout), &rep); err != nil || bench.code != 0 {
		t.Fatalf("regionkv-bench: exit code %d, %v\n%s%s", bench.code, err, bench.stdout, bench.stderr)
	}
	if rep.OpsPerSec <= 0 || rep.Errors.Total != 0 || rep.Latency["put"].Count == 0 || rep.Latency["get"].Count == 0 || rep.Latency["all"].P99 <= 0 {
		t.Errorf("bench report: %s", bench.stdout)
	}
	t.Logf("bench: %.0f ops/s, p99 %d µs", rep.OpsPerSec, rep.Latency["all"].P99)
	text := runTool(t, ctx, tools.Bench, "--scheduler", sched.Addr, "--workload", "get", "--count", "200", "--warmup", "0s", "--keys", "1000")
	if text.code != 0 || !strings.Contains(text.stdout, "p99.9") || !strings.Contains(text.stdout, "errors: none") {
		t.Errorf("bench text report: exit code %d\n%s%s", text.code, text.stdout, text.stderr)
	}

	step("bench")

	// Bad input.
	wantFail(2, `unknown command "frobnicate"`, ctl("frobnicate"))
	wantFail(2, `unknown command "bogus" for "regionkv-ctl store"`, ctl("store", "bogus"))
	wantFail(2, "not valid hex", ctl("--hex", "get", "zz"))
	wantFail(2, "wrong number of arguments", ctl("put", "only-a-key"))
	wantFail(2, "unknown flag", ctl("get", "a", "--frob"))
	wantFail(2, "is not a positive integer", ctl("region", "show", "abc"))
	wantFail(3, "region not found", ctl("region", "show", "999999"))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	start = time.Now()
	r := runTool(t, ctx, tools.Ctl, "--scheduler", dead, "--timeout", "1s", "get", "a")
	wantFail(1, "cannot reach the scheduler at "+dead, r)
	r = runTool(t, ctx, tools.Ctl, "--scheduler", dead, "--timeout", "1s", "store", "list")
	wantFail(1, "cannot reach the scheduler at "+dead, r)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("unreachable scheduler: took %v to fail", d)
	}
	wantFail(2, "--workload", runTool(t, ctx, tools.Bench, "--workload", "nope"))
	wantFail(1, "cannot reach the scheduler", runTool(t, ctx, tools.Bench, "--scheduler", dead, "--timeout", "1s"))
	step("bad input")
}
