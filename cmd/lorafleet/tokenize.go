package main

import (
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/lorafleet/lorafleet/pkg/tokenizer"
)

func runTokenize(args []string, e env) error {
	fs := newFlags("tokenize", "--model DIR [--no-special] < text", e)
	modelDir := fs.String("model", "", "directory holding tokenizer.json (a model directory or a tokenizer alone)")
	noSpecial := fs.Bool("no-special", false, "do not add the template's special tokens (BOS)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model", *modelDir); err != nil {
		return err
	}
	tok, err := tokenizer.Load(*modelDir)
	if err != nil {
		return err
	}
	text, err := io.ReadAll(e.stdin)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if !utf8.Valid(text) {
		return fmt.Errorf("stdin is not valid UTF-8")
	}
	ids := tok.Encode(string(text), !*noSpecial)
	if ids == nil {
		ids = []int{}
	}
	return json.NewEncoder(e.stdout).Encode(map[string][]int{"ids": ids})
}
