// Command lorafleet serves one base model with many LoRA adapters. Each subcommand parses
// its flags and hands a config to the package that does the work.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// env is what a subcommand may touch of the process, so tests can run it in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

type command struct {
	summary string
	run     func(args []string, e env) error
}

var commands = map[string]command{
	"logits":   {"print next-token logits for token ids", runLogits},
	"tokenize": {"print the token ids of stdin's text", runTokenize},
	"generate": {"generate a continuation of a prompt", runGenerate},
	"worker":   {"serve the OpenAI and LoRAX APIs for one model and its adapters", runWorker},
	"router":   {"route requests to workers by adapter (bounded-load consistent hashing)", runRouter},
	"nats":     {"run the embedded NATS server for load reports", runNATS},
	"serve":    {"run everything in one process: NATS, a router and workers", runServe},
	"bench":    {"benchmark tools: bench load (S-LoRA-style load generator)", runBench},
}

func main() {
	os.Exit(run(os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
}

func run(args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "lorafleet: unknown command %q\n\n", args[0])
		usage(e.stderr)
		return 2
	}
	err := cmd.run(args[1:], e)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(e.stderr, "lorafleet %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lorafleet <command> [flags]   (lorafleet <command> --help for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

// errUsage marks a flag error the flag package has already reported.
var errUsage = errors.New("usage")

// newFlags returns a flag set that reports to stderr and returns errors instead of exiting.
func newFlags(name, synopsis string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: lorafleet %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, mapping a flag error to errUsage; a --help returns flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return errUsage
	}
	return err
}

// required reports a missing mandatory flag.
func required(fs *flag.FlagSet, name, value string) error {
	if value == "" {
		fmt.Fprintf(fs.Output(), "flag --%s is required\n", name)
		fs.Usage()
		return errUsage
	}
	return nil
}
