package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/lorafleet/lorafleet/worker/engine"
)

func runLogits(args []string, e env) error {
	fs := newFlags("logits", "--model DIR [--adapter DIR] --ids 0,78,328 [--all-positions]", e)
	modelDir := fs.String("model", "", "Hugging Face model directory (config.json, *.safetensors)")
	adapterDir := fs.String("adapter", "", "PEFT LoRA adapter directory (optional)")
	idList := fs.String("ids", "", "comma-separated token ids")
	all := fs.Bool("all-positions", false, "print the logits of every position, not only the last")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model", *modelDir); err != nil {
		return err
	}
	if err := required(fs, "ids", *idList); err != nil {
		return err
	}
	ids, err := parseIDs(*idList)
	if err != nil {
		return err
	}
	m, a, err := loadModel(*modelDir, *adapterDir)
	if err != nil {
		return err
	}
	eng, err := engine.New(m, engine.Config{})
	if err != nil {
		return err
	}
	seq := &engine.Sequence{Prompt: ids, Adapter: a, KeepLogits: engine.LogitsNext}
	if *all {
		seq.KeepLogits = engine.LogitsAll
	}
	if err := eng.Run(context.Background(), []*engine.Sequence{seq}); err != nil {
		return err
	}
	return json.NewEncoder(e.stdout).Encode(map[string][][]float32{"logits": seq.Logits})
}

func parseIDs(s string) ([]int, error) {
	var ids []int
	for _, f := range strings.Split(s, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--ids: %q is not a token id", f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
