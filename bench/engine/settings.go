package engine

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/lorafleet/lorafleet/gpukern"
)

// Settings: a side-by-side variant's change of the backend, made for a whole run
// (Config.Settings, `bench engine --with`). A run's winners (Report.Winners) measured again
// together, in the same device session, say what the targets would be with them as the
// defaults, before any default is changed.
type setting struct {
	name    string
	variant string // the variant whose configuration the setting is, with LoRA
	// excludes: settings that choose the same thing (which GEMM kernels run) another way; of
	// two winners that exclude each other the faster at the deciding batch stays.
	excludes []string
	has      func(gpukern.Backend) bool // whether a backend has the setting
}

var settings = []setting{
	{"cublas", CuBLAS, []string{"deep", "lean", "unsplit"}, implements[GEMMChooser]},
	{"deep", Deep, []string{"cublas", "lean", "unsplit"}, implements[DeepGEMMChooser]},
	{"lean", Lean, []string{"cublas", "deep"}, implements[LeanGEMMChooser]},
	{"unsplit", NotSplit, []string{"cublas", "deep"}, implements[Splitter]},
	{"tuned", Timed, nil, implements[GEMMTuner]},
	{"rope-apart", RoPEApart, nil, implements[RoPEFuser]},
}

// implements says whether be has the interface T of a setting.
func implements[T any](be gpukern.Backend) bool {
	_, ok := be.(T)
	return ok
}

// SettingNames are the settings' names, in their order (Config.Settings, `bench engine --with`).
func SettingNames() []string {
	names := make([]string, len(settings))
	for i, s := range settings {
		names[i] = s.name
	}
	return names
}

// settingNamed is the setting of that name, if there is one.
func settingNamed(name string) (setting, bool) {
	i := slices.IndexFunc(settings, func(s setting) bool { return s.name == name })
	if i < 0 {
		return setting{}, false
	}
	return settings[i], true
}

// checkSettings refuses unknown, repeated and mutually exclusive settings.
func checkSettings(names []string) error {
	for i, n := range names {
		s, ok := settingNamed(n)
		if !ok {
			return fmt.Errorf("engine bench: no setting %q (%s)", n, strings.Join(SettingNames(), ", "))
		}
		for _, other := range names[i+1:] {
			if other == n || slices.Contains(s.excludes, other) {
				return fmt.Errorf("engine bench: settings %q and %q together", n, other)
			}
		}
	}
	return nil
}

// lacking is an error naming the first of names that be does not have (a report would name a
// setting that was not in place), or nil.
func lacking(be gpukern.Backend, names []string) error {
	for _, n := range names {
		if s, ok := settingNamed(n); ok && !s.has(be) {
			return fmt.Errorf("engine bench: the %s backend has no setting %q", be.Name(), n)
		}
	}
	return nil
}

// applySettings makes the run's settings and returns what puts the defaults back.
func (r *runner) applySettings() (restore func()) {
	var undo []func()
	for _, n := range r.cfg.Settings {
		s, _ := settingNamed(n) // checked by setDefaults
		undo = append(undo, r.configure(s.variant))
	}
	return func() {
		for _, u := range slices.Backward(undo) {
			u()
		}
	}
}

// winMargin is how much faster a variant's step must be to win, and how much slower it may
// be at the other batches it ran at: the spread of a step's median between runs on the
// H100 (side-stream priority on and off, the same code, came within it at every batch).
const winMargin = 0.05 // ms

// Winners are the settings whose variants beat the defaults in this run: with LoRA, faster
// by more than winMargin at the largest batch the variant ran at (batch 32 for our GEMMs'
// variants, the largest for cuBLAS's timed GEMMs; the targets' batches) and slower by no
// more than winMargin at any other. Of winners that exclude each other the one faster at
// that batch stays. In the order of settings; none from a run with settings of its own.
func (r *Report) Winners() []string {
	if len(r.Settings) > 0 {
		return nil
	}
	gain := map[string]float64{} // setting: ms saved at its deciding batch
	for _, s := range settings {
		if g, ok := r.wins(s.variant); ok {
			gain[s.name] = g
		}
	}
	var won []string
	for _, s := range settings {
		g, ok := gain[s.name]
		if !ok {
			continue
		}
		beaten := slices.ContainsFunc(s.excludes, func(o string) bool {
			og, ok := gain[o]
			return ok && (og > g || og == g && slices.Index(won, o) >= 0)
		})
		if !beaten {
			won = append(won, s.name)
		}
	}
	return won
}

// wins says whether variant beats the default by Winners' rule, and by how much at the
// deciding batch.
func (r *Report) wins(variant string) (float64, bool) {
	top, gain, worst := -1, 0.0, math.Inf(-1) // worst: the largest delta at the other batches
	for _, d := range r.Decode {
		base, ok := r.baseFor(d)
		if d.Variant != variant || !ok {
			continue
		}
		delta := d.StepMS - base.StepMS
		if d.Batch > top {
			if top >= 0 {
				worst = max(worst, -gain)
			}
			top, gain = d.Batch, -delta
		} else {
			worst = max(worst, delta)
		}
	}
	return gain, top >= 0 && gain > winMargin && worst <= winMargin
}
