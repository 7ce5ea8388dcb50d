package sched

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// testCase is one block of testdata/*.txt.
type testCase struct {
	name string
	cfg  Config
	st   State
	want string // the expected plan, formatted as formatPlan does
	line int
}

func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test data: %v", err)
	}
	for _, f := range files {
		for _, c := range readCases(t, f) {
			t.Run(c.name, func(t *testing.T) {
				var p Plan
				Schedule(&c.cfg, &c.st, &p)
				if got := formatPlan(&p); got != c.want {
					t.Errorf("%s:%d\ngot:\n%s\nwant:\n%s", f, c.line, got, c.want)
				}
			})
		}
	}
}

func readCases(t *testing.T, path string) []testCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []testCase
	var cur *testCase
	inPlan := false
	var plan []string
	flush := func() {
		if cur != nil {
			cur.want = normalizePlan(plan)
			cases = append(cases, *cur)
		}
		cur, inPlan, plan = nil, false, nil
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#"):
		case line == "":
			flush()
		case strings.HasPrefix(line, "name "):
			flush()
			cur = &testCase{name: strings.TrimPrefix(line, "name "), line: n}
		case cur == nil:
			t.Fatalf("%s:%d: %q outside a case", path, n, line)
		case line == "----":
			inPlan = true
		case inPlan:
			plan = append(plan, line)
		default:
			if err := parseStateLine(cur, line); err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
		}
	}
	flush()
	return cases
}

func parseStateLine(c *testCase, line string) error {
	f := strings.Fields(line)
	kv := map[string]string{}
	for _, x := range f[1:] {
		if k, v, ok := strings.Cut(x, "="); ok {
			kv[k] = v
		}
	}
	num := func(k string) int {
		n, _ := strconv.Atoi(kv[k])
		return n
	}
	switch f[0] {
	case "config":
		c.cfg = Config{MaxBatchTokens: num("batch"), MaxRunning: num("running"), Slots: num("slots"), BlockSize: num("block")}
		return c.cfg.Validate()
	case "free":
		n, err := strconv.Atoi(f[1])
		c.st.FreeBlocks = n
		return err
	case "resident":
		c.st.Resident = f[1:]
	case "run", "wait":
		s := Seq{ID: uint64(num("id")), Adapter: kv["adapter"], Arrival: uint64(num("arrival")), Len: num("len"), Computed: num("computed"), Blocks: num("blocks")}
		if f[0] == "run" {
			c.st.Running = append(c.st.Running, s)
		} else {
			c.st.Waiting = append(c.st.Waiting, s)
		}
	default:
		return fmt.Errorf("unknown line %q", line)
	}
	return nil
}

// normalizePlan fills in the empty lists the expected text leaves out.
func normalizePlan(lines []string) string {
	got := map[string]string{}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, " ")
		got[k] = strings.TrimSpace(v)
	}
	var b strings.Builder
	for _, k := range []string{"preempt", "evict", "load", "admit", "chunks"} {
		fmt.Fprintf(&b, "%s %s\n", k, got[k])
	}
	return b.String()
}

func formatPlan(p *Plan) string {
	ids := func(xs []uint64) string {
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = strconv.FormatUint(x, 10)
		}
		return strings.Join(s, " ")
	}
	chunks := make([]string, len(p.Chunks))
	for i, c := range p.Chunks {
		chunks[i] = fmt.Sprintf("%d:%d", c.ID, c.N)
	}
	return normalizePlan([]string{
		"preempt " + ids(p.Preempt), "evict " + strings.Join(p.Evict, " "), "load " + strings.Join(p.Load, " "),
		"admit " + ids(p.Admit), "chunks " + strings.Join(chunks, " "),
	})
}

func TestValidate(t *testing.T) {
	c := Config{BlockSize: 16}
	if err := c.Validate(); err != nil || c.MaxBatchTokens != 512 || c.MaxRunning != 256 || c.Slots != 8 {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	for _, bad := range []Config{{}, {BlockSize: 16, Slots: -1}, {BlockSize: -4}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
