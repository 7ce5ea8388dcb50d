package main

import (
	"fmt"

	"github.com/lorafleet/lorafleet/gpukern/cpuref"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
)

// loadModel loads the base model on the CPU backend and, when adapterDir is set, one PEFT
// adapter checked against it.
func loadModel(modelDir, adapterDir string) (*model.Model, *model.Adapter, error) {
	m, err := model.Load(modelDir, cpuref.New(0))
	if err != nil {
		return nil, nil, err
	}
	if adapterDir == "" {
		return m, nil, nil
	}
	pa, err := peft.Load(adapterDir, m.Config.PEFTBase(), peft.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("adapter %s: %w", adapterDir, err)
	}
	a, err := m.LoadAdapter(adapterDir, pa)
	if err != nil {
		return nil, nil, err
	}
	return m, a, nil
}
