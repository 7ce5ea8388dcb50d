// Package golden reads the reference outputs in testdata/*/golden.json, computed by Hugging
// Face transformers + PEFT in float64, for tests across the repository.
package golden

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Sets are the golden model sets under testdata/.
var Sets = []string{"tiny-llama", "tiny-qwen2"}

// Case is a prompt run through the model with an adapter (empty: the base model).
type Case struct {
	Prompt       string    `json:"prompt"`
	PromptIDs    []int     `json:"prompt_ids"`
	Adapter      string    `json:"adapter"`
	LastLogits   []float64 `json:"last_logits"`
	Greedy       []int     `json:"greedy"`
	GreedyMinGap float64   `json:"greedy_min_gap"`
}

// FullLogits holds the logits of every prompt position.
type FullLogits struct {
	PromptIDs []int       `json:"prompt_ids"`
	Adapter   string      `json:"adapter"`
	Logits    [][]float64 `json:"logits"`
}

// TokenizerCase is a text with its ids with and without special tokens.
type TokenizerCase struct {
	Text         string `json:"text"`
	IDs          []int  `json:"ids"`
	IDsNoSpecial []int  `json:"ids_no_special"`
	Decoded      string `json:"decoded"`
}

// ChatCase is a conversation rendered with the chat template.
type ChatCase struct {
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	AddGenerationPrompt bool   `json:"add_generation_prompt"`
	Text                string `json:"text"`
	IDs                 []int  `json:"ids"`
}

// File is one golden.json.
type File struct {
	Set            string          `json:"set"`
	VocabSize      int             `json:"vocab_size"`
	Cases          []Case          `json:"cases"`
	FullLogits     []FullLogits    `json:"full_logits"`
	TokenizerCases []TokenizerCase `json:"tokenizer_cases"`
	ChatCases      []ChatCase      `json:"chat_cases"`

	Dir string `json:"-"` // testdata/<set>
}

// ModelDir is the set's model directory.
func (f *File) ModelDir() string { return filepath.Join(f.Dir, "model") }

// AdapterDir is the directory of one of the set's adapters.
func (f *File) AdapterDir(name string) string { return filepath.Join(f.Dir, "adapters", name) }

// Adapters lists the adapter names the cases use.
func (f *File) Adapters() []string {
	seen := map[string]bool{}
	var names []string
	for _, c := range f.Cases {
		if c.Adapter != "" && !seen[c.Adapter] {
			seen[c.Adapter] = true
			names = append(names, c.Adapter)
		}
	}
	return names
}

// TestdataDir finds the repository's testdata directory from the working directory up.
func TestdataDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("golden: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Load reads testdata/<set>/golden.json.
func Load(set string) (*File, error) {
	root, err := TestdataDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, set)
	b, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		return nil, fmt.Errorf("golden: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("golden: %s: %w", set, err)
	}
	f.Dir = dir
	return &f, nil
}
