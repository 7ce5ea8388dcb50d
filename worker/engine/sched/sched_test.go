package sched

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The data-driven cases live in testdata/*.txt, one case per block:
//
//	name <what the case shows>
//	config batch=<MaxBatchTokens> running=<MaxRunning> slots=<Slots> block=<BlockSize>
//	free <FreeBlocks>
//	resident <adapter>...            (least recently used first)
//	loading <adapter>...             (resident, upload in flight)
//	run id=<n> [adapter=<a>] arrival=<n> len=<n> [computed=<n>] [blocks=<n>]
//	wait id=<n> [adapter=<a>] arrival=<n> len=<n>
//	----
//	preempt <id>...
//	evict <adapter>...
//	load <adapter>...
//	admit <id>...
//	chunks <id>:<n>...
//
// Lines starting with # are comments; the plan lists that are empty may be left out.

type testCase struct {
	file string
	line int
	name string
	cfg  Config
	st   State
	want []string // the expected plan, one line per list, as formatPlan writes it
}

func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test data: %v", err)
	}
	for _, f := range files {
		for _, c := range readCases(t, f) {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".txt")+"/"+c.name, func(t *testing.T) {
				if err := checkState(&c.cfg, &c.st); err != nil {
					t.Fatalf("%s:%d: the case's state is not one the engine produces: %v", c.file, c.line, err)
				}
				var p Plan
				Schedule(&c.cfg, &c.st, &p)
				if got := formatPlan(&p); !slices.Equal(got, c.want) {
					t.Errorf("%s:%d\ngot:\n%s\nwant:\n%s", c.file, c.line, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
				}
				checkPlan(t, &c.cfg, &c.st, &p)
			})
		}
	}
}

func readCases(t *testing.T, path string) []testCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []testCase
	var cur *testCase
	var plan map[string]string // nil until the "----" line
	flush := func() {
		if cur != nil {
			cur.want = planLines(plan)
			cases = append(cases, *cur)
		}
		cur, plan = nil, nil
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		var err error
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "name "):
			flush()
			cur = &testCase{file: path, line: n, name: strings.TrimPrefix(line, "name ")}
		case cur == nil:
			err = errors.New("line outside a case (start one with name)")
		case line == "----" && plan == nil:
			plan = map[string]string{}
		case plan != nil:
			err = parsePlanLine(plan, line)
		default:
			err = parseStateLine(cur, line)
		}
		if err != nil {
			t.Fatalf("%s:%d: %q: %v", path, n, line, err)
		}
	}
	if cur != nil && plan == nil {
		t.Fatalf("%s: the last case has no ---- line", path)
	}
	flush()
	return cases
}

func parseStateLine(c *testCase, line string) error {
	verb, rest, _ := strings.Cut(line, " ")
	args := strings.Fields(rest)
	switch verb {
	case "config":
		kv, err := keyValues(args, "batch", "running", "slots", "block")
		if err != nil {
			return err
		}
		c.cfg = Config{MaxBatchTokens: kv.num("batch"), MaxRunning: kv.num("running"), Slots: kv.num("slots"), BlockSize: kv.num("block")}
		return errors.Join(kv.err, c.cfg.Validate())
	case "free":
		if len(args) != 1 {
			return errors.New("free takes one number")
		}
		var err error
		c.st.FreeBlocks, err = strconv.Atoi(args[0])
		return err
	case "resident":
		c.st.Resident = args
	case "loading":
		c.st.Loading = args
	case "run", "wait":
		return parseSeq(c, verb, args)
	default:
		return errors.New("unknown line")
	}
	return nil
}

func parseSeq(c *testCase, verb string, args []string) error {
	kv, err := keyValues(args, "id", "adapter", "arrival", "len", "computed", "blocks")
	if err != nil {
		return err
	}
	s := Seq{ID: uint64(kv.num("id")), Adapter: kv.m["adapter"], Arrival: uint64(kv.num("arrival")),
		Len: kv.num("len"), Computed: kv.num("computed"), Blocks: kv.num("blocks")}
	if verb == "run" {
		c.st.Running = append(c.st.Running, s)
	} else {
		c.st.Waiting = append(c.st.Waiting, s)
	}
	return kv.err
}

// kvs holds key=value arguments; num records the first malformed number in err.
type kvs struct {
	m   map[string]string
	err error
}

func keyValues(args []string, known ...string) (*kvs, error) {
	kv := &kvs{m: map[string]string{}}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || !slices.Contains(known, k) {
			return nil, fmt.Errorf("bad argument %q (known keys: %v)", a, known)
		}
		if _, dup := kv.m[k]; dup {
			return nil, fmt.Errorf("%s given twice", k)
		}
		kv.m[k] = v
	}
	return kv, nil
}

func (kv *kvs) num(k string) int {
	v, ok := kv.m[k]
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil && kv.err == nil {
		kv.err = fmt.Errorf("%s: %w", k, err)
	}
	return n
}

var planKeys = []string{"preempt", "evict", "load", "admit", "chunks"}

func parsePlanLine(plan map[string]string, line string) error {
	k, v, _ := strings.Cut(line, " ")
	if !slices.Contains(planKeys, k) {
		return fmt.Errorf("unknown plan list (want one of %v)", planKeys)
	}
	if _, dup := plan[k]; dup {
		return fmt.Errorf("%s given twice", k)
	}
	plan[k] = strings.Join(strings.Fields(v), " ")
	return nil
}

// planLines writes a plan's lists in a fixed order, empty ones included.
func planLines(plan map[string]string) []string {
	lines := make([]string, len(planKeys))
	for i, k := range planKeys {
		lines[i] = strings.TrimSpace(k + " " + plan[k])
	}
	return lines
}

func formatPlan(p *Plan) []string {
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
	return planLines(map[string]string{
		"preempt": ids(p.Preempt), "evict": strings.Join(p.Evict, " "), "load": strings.Join(p.Load, " "),
		"admit": ids(p.Admit), "chunks": strings.Join(chunks, " "),
	})
}

func TestValidate(t *testing.T) {
	c := Config{BlockSize: 16}
	if err := c.Validate(); err != nil || c != (Config{MaxBatchTokens: 512, MaxRunning: 256, Slots: 8, BlockSize: 16}) {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	for _, bad := range []Config{{}, {BlockSize: -4}, {BlockSize: 16, Slots: -1}, {BlockSize: 16, MaxRunning: -1}, {BlockSize: 16, MaxBatchTokens: -1}} {
		if err := bad.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: got %v, want ErrConfig", bad, err)
		}
	}
}

// Schedule applies the defaults to a copy, and plans nothing for a config Validate rejects
// rather than dividing by a zero BlockSize.
func TestScheduleConfig(t *testing.T) {
	st := State{FreeBlocks: 100, Waiting: []Seq{{ID: 1, Arrival: 1, Len: 600}}}
	var p Plan
	cfg := Config{BlockSize: 16}
	Schedule(&cfg, &st, &p)
	if cfg != (Config{BlockSize: 16}) {
		t.Errorf("Schedule changed the config to %+v", cfg)
	}
	if want := []Chunk{{ID: 1, N: 512}}; !slices.Equal(p.Chunks, want) {
		t.Errorf("chunks %v, want %v (the default budget)", p.Chunks, want)
	}
	for _, bad := range []Config{{}, {BlockSize: 16, MaxBatchTokens: -1}} {
		Schedule(&bad, &st, &p)
		if len(p.Admit)+len(p.Chunks) != 0 {
			t.Errorf("%+v: planned %+v", bad, p)
		}
	}
}
