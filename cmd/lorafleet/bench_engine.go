package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/lorafleet/lorafleet/bench/engine"
	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cpuref"
	"github.com/lorafleet/lorafleet/worker/model"
)

// runBenchEngine measures decode and prefill steps of a random model (bench/engine).
func runBenchEngine(args []string, e env) error {
	fs := newFlags("bench engine", "[--backend cuda] [--out DIR] [flags]", e)
	var c engine.Config
	var backend, shape, batches, adapters, contexts, out, commit, with string
	def := "cpu"
	if cudaBuilt {
		def = "cuda"
	}
	fs.StringVar(&backend, "backend", def, "cpu, or cuda (the lorafleet-cuda binary)")
	fs.StringVar(&shape, "shape", "", "config.json of the model shape (default: Llama-2-7B)")
	fs.StringVar(&batches, "batches", "1,8,32,64,128", "decode batch sizes")
	fs.StringVar(&adapters, "adapters", "1,8,32,0", "distinct adapters per batch (0: one per row)")
	fs.StringVar(&contexts, "contexts", "128,512", "tokens already cached per sequence")
	fs.IntVar(&c.Rank, "rank", 16, "adapter rank (all seven projections)")
	fs.IntVar(&c.Steps, "steps", 50, "timed steps per configuration (the median is reported)")
	fs.IntVar(&c.Warmup, "warmup", 5, "untimed steps first")
	fs.IntVar(&c.PrefillPrompt, "prefill-prompt", 512, "prompt tokens per prefill sequence")
	fs.IntVar(&c.PrefillSeqs, "prefill-seqs", 4, "sequences in the prefill step")
	fs.Float64Var(&c.Bandwidth, "bandwidth", 3.0e12, "memory bandwidth of the floor, bytes/s (H100: 3.0e12 measured)")
	fs.StringVar(&commit, "commit", "", "commit the binary was built from, for the report")
	fs.StringVar(&with, "with", "", "settings in place of the defaults for the whole run, no variants ("+strings.Join(engine.SettingNames(), ", ")+"; see --winners)")
	fs.StringVar(&out, "out", "", "directory for engine.json and engine.md (default: print the table only)")
	peftFile := fs.String("peft", "", "JSON of bench/baselines/peft_generate.py run on the same GPU, to compare with")
	again := fs.String("report", "", "engine.json of an earlier run: report it again (with --peft, say, measured after it) instead of measuring")
	winners := fs.Bool("winners", false, "with --report: print only the settings whose variants beat the defaults in that run, for --with")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *again != "" {
		if with != "" {
			return fmt.Errorf("--with: a run's setting, not a report's")
		}
		b, err := os.ReadFile(*again)
		if err != nil {
			return err
		}
		rep := new(engine.Report)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields() // a report this command wrote, not some other JSON
		if err := dec.Decode(rep); err != nil {
			return fmt.Errorf("--report %s: %w", *again, err)
		}
		if *winners {
			_, err := fmt.Fprintln(e.stdout, strings.Join(rep.Winners(), ","))
			return err
		}
		return report(rep, *peftFile, out, e)
	}
	if *winners {
		return fmt.Errorf("--winners: only with --report")
	}
	if with != "" {
		c.Settings = strings.Split(with, ",")
	}
	c.Model = engine.Llama2()
	if shape != "" {
		b, err := os.ReadFile(shape)
		if err != nil {
			return err
		}
		if c.Model, err = model.ParseConfig(b); err != nil {
			return fmt.Errorf("--shape: %w", err)
		}
	}
	var err error
	for _, l := range []struct {
		flag string
		list string
		dst  *[]int
	}{{"--batches", batches, &c.Batches}, {"--adapters", adapters, &c.Adapters}, {"--contexts", contexts, &c.Contexts}} {
		if *l.dst, err = ints(l.list); err != nil {
			return fmt.Errorf("%s: %w", l.flag, err)
		}
	}
	slots, err := c.MaxAdapters()
	if err != nil {
		return err
	}
	var be gpukern.Backend
	switch backend {
	case "cpu":
		be = cpuref.New(0)
	case "cuda":
		cbe, closeFn, err := newCUDABackend(slots, c.Model.AdapterLens(c.Rank))
		if err != nil {
			return err
		}
		defer closeFn()
		be = cbe
		c.HostBF16 = true // as the worker's host tier holds adapters for this backend
	default:
		return fmt.Errorf("--backend: %q is neither cpu nor cuda", backend)
	}
	// A signal (say, from `timeout` ahead of a device machine's time limit) ends the run
	// with what it has measured.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	rep, runErr := engine.Run(ctx, be, c, func(s string) { fmt.Fprintln(e.stderr, s) })
	if rep == nil {
		return runErr
	}
	rep.Commit = commit
	if err := report(rep, *peftFile, out, e); err != nil {
		return err
	}
	return runErr // after the partial report is out
}

// report adds the PEFT baseline in peftFile (if named) to rep, judges the targets, prints the
// markdown and, if out is named, writes engine.json and engine.md there.
func report(rep *engine.Report, peftFile, out string, e env) error {
	if peftFile != "" {
		b, err := os.ReadFile(peftFile)
		if err != nil {
			return err
		}
		rep.PEFT = new(engine.PEFT)
		if err := json.Unmarshal(b, rep.PEFT); err != nil {
			return fmt.Errorf("--peft: %w", err)
		}
	}
	rep.Targets = rep.Judge()
	if err := rep.Markdown(e.stdout); err != nil {
		return err
	}
	if out == "" {
		return nil
	}
	return writeReport(rep, out)
}

// writeReport writes engine.json and engine.md into the directory out.
func writeReport(rep *engine.Report, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "engine.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(out, "engine.md"))
	if err != nil {
		return err
	}
	if err := rep.Markdown(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func ints(list string) ([]int, error) {
	var vs []int
	for f := range strings.SplitSeq(list, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}
