package peft

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dlclark/regexp2/v2"
)

// PEFT patterns are Python regular expressions; regexp2 in RE2 mode accepts
// Python's (?P<name>…) groups and gives $ its end-of-text meaning.
const (
	// maxPatternLen bounds a pattern from a config file.
	maxPatternLen = 4096
	// matchTimeout stops a pathological backtracking pattern.
	matchTimeout = time.Second
	// allLinear is PEFT's INCLUDE_LINEAR_LAYERS_SHORTHAND.
	allLinear = "all-linear"
)

// Wrappers giving each pattern PEFT's Python semantics.
const (
	fullMatch  = `^(?:%s)$`              // re.fullmatch(target_modules, key)
	patternKey = `^(.*\.)?(%s)$`         // get_pattern_key: re.match(rf"(.*\.)?({key})$", key)
	layerIndex = `^(?:.*?\.%s\.(\d+)\.)` // re.match(rf".*?\.{pattern}\.(\d+)\.", key)
	anyLayers  = `[^.]*`                 // the pattern PEFT uses without layers_pattern
)

type matchers struct {
	target, exclude *regexp2.Regexp // nil for the list forms and all-linear
	rank, alpha     []*regexp2.Regexp
	layers          []*regexp2.Regexp
}

func compileMatchers(c *Config) (*matchers, error) {
	m := &matchers{}
	var err error
	if c.TargetRegex != "" && !strings.EqualFold(c.TargetRegex, allLinear) {
		if m.target, err = compile("target_modules", c.TargetRegex, fullMatch); err != nil {
			return nil, err
		}
	}
	if c.ExcludeRegex != "" {
		if m.exclude, err = compile("exclude_modules", c.ExcludeRegex, fullMatch); err != nil {
			return nil, err
		}
	}
	for _, p := range c.RankPattern {
		if err = appendCompiled(&m.rank, "rank_pattern", p.Key, patternKey); err != nil {
			return nil, err
		}
	}
	for _, p := range c.AlphaPattern {
		if err = appendCompiled(&m.alpha, "alpha_pattern", p.Key, patternKey); err != nil {
			return nil, err
		}
	}
	layers := c.LayersPattern
	if len(layers) == 0 {
		layers = []string{anyLayers}
	}
	for _, p := range layers {
		if err = appendCompiled(&m.layers, "layers_pattern", p, layerIndex); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func appendCompiled(dst *[]*regexp2.Regexp, key, pattern, wrap string) error {
	re, err := compile(key, pattern, wrap)
	*dst = append(*dst, re)
	return err
}

// compile checks pattern on its own first, so that a pattern that is only
// valid once wrapped (such as "a)|(b") is refused as Python would refuse it.
func compile(key, pattern, wrap string) (*regexp2.Regexp, error) {
	if len(pattern) > maxPatternLen {
		return nil, fmt.Errorf("%w: %s: pattern longer than %d bytes", ErrConfig, key, maxPatternLen)
	}
	if _, err := regexp2.Compile(pattern, regexp2.RE2); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, key, err)
	}
	re, err := regexp2.Compile(fmt.Sprintf(wrap, pattern), regexp2.RE2)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, key, err)
	}
	re.MatchTimeout = matchTimeout
	return re, nil
}

// moduleKey is one module of the base model that a target may name.
type moduleKey struct {
	path  string  // full module path, as PEFT sees it in named_modules()
	layer int     // -1 outside the decoder layers
	mod   *Module // nil for embed_tokens and lm_head
	err   error   // refusal when targeted (embed_tokens, lm_head)
}

func moduleKeys(base Base) []moduleKey {
	keys := []moduleKey{
		{path: "model.embed_tokens", layer: -1, err: ErrEmbedding},
		{path: "lm_head", layer: -1, err: ErrLMHead},
	}
	for l := range base.NumLayers {
		for i := range base.Modules {
			m := &base.Modules[i]
			keys = append(keys, moduleKey{path: fmt.Sprintf("model.layers.%d.%s", l, m.Path), layer: l, mod: m})
		}
	}
	return keys
}

// targets mirrors PEFT's check_target_module_exists for one module.
func (c *Config) targets(k moduleKey) (bool, error) {
	if excluded, err := c.excludes(k.path); excluded || err != nil {
		return false, err
	}
	switch {
	case c.m.target != nil:
		return c.m.target.MatchString(k.path)
	case c.TargetRegex != "": // all-linear
		return k.mod != nil, nil
	case slices.Contains(c.TargetModules, k.path):
		return true, nil // an exact path ignores layers_to_transform, as in PEFT
	case !hasSuffixIn(k.path, c.TargetModules):
		return false, nil
	case len(c.LayersToTransform) == 0:
		return true, nil
	}
	idx, ok, err := c.layerOf(k.path)
	return ok && slices.Contains(c.LayersToTransform, idx), err
}

func (c *Config) excludes(path string) (bool, error) {
	if c.m.exclude != nil {
		return c.m.exclude.MatchString(path)
	}
	return slices.Contains(c.ExcludeModules, path) || hasSuffixIn(path, c.ExcludeModules), nil
}

// hasSuffixIn reports whether path ends with "."+name for some name.
func hasSuffixIn(path string, names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(path, "."+n) })
}

// layerOf finds the layer index in path with the first layers pattern that
// matches, as PEFT does; ok is false when none matches.
func (c *Config) layerOf(path string) (idx int, ok bool, err error) {
	for _, re := range c.m.layers {
		m, err := re.FindStringMatch(path)
		if err != nil {
			return 0, false, err
		}
		if m == nil {
			continue
		}
		g := m.GroupByNumber(1)
		if g == nil {
			return 0, false, nil
		}
		idx, err := strconv.Atoi(g.String())
		return idx, err == nil, nil
	}
	return 0, false, nil
}

// rankAlpha returns the rank and alpha of the module at path: the first
// matching rank_pattern / alpha_pattern key wins, else r / lora_alpha.
func (c *Config) rankAlpha(path string) (rank int, alpha float64, err error) {
	rank, alpha = c.R, c.LoraAlpha
	i, err := firstMatch(c.m.rank, path)
	if i >= 0 {
		rank = c.RankPattern[i].Rank
	}
	j, err2 := firstMatch(c.m.alpha, path)
	if j >= 0 {
		alpha = c.AlphaPattern[j].Alpha
	}
	return rank, alpha, errors.Join(err, err2)
}

// firstMatch is the index of the first pattern matching path, or -1.
func firstMatch(res []*regexp2.Regexp, path string) (int, error) {
	for i, re := range res {
		ok, err := re.MatchString(path)
		if err != nil || ok {
			return i, err
		}
	}
	return -1, nil
}
