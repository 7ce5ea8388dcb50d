package worker

import (
	"github.com/lorafleet/lorafleet/pkg/api"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// params builds the sampler settings: the request's fields over generation_config.json's
// defaults over OpenAI's, as vLLM does. logprobs is sample.NoLogprobs for none.
func (w *Worker) params(r *api.Params, logprobs int) (sample.Params, error) {
	p := sample.DefaultParams()
	setF(&p.Temperature, w.gen.Temperature)
	setF(&p.TopP, w.gen.TopP)
	setI(&p.TopK, w.gen.TopK)
	setF(&p.Temperature, r.Temperature)
	setF(&p.TopP, r.TopP)
	setF(&p.MinP, r.MinP)
	setI(&p.TopK, r.TopK)
	setF(&p.RepetitionPenalty, r.RepetitionPenalty)
	setF(&p.PresencePenalty, r.PresencePenalty)
	setF(&p.FrequencyPenalty, r.FrequencyPenalty)
	p.MinTokens = r.MinTokens
	p.Seed = r.Seed
	p.StopTokenIDs = r.StopTokenIDs
	p.IgnoreEOS = r.IgnoreEOS
	p.Logprobs = logprobs
	p.LogitBias = r.LogitBiasIDs()
	if err := p.Validate(w.mc.VocabSize); err != nil {
		return p, err
	}
	return p, nil
}

func setF(dst *float64, v *float64) {
	if v != nil {
		*dst = *v
	}
}

func setI(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

// maxTokens resolves max_tokens against the context, with vLLM's message when it does not fit.
func (w *Worker) maxTokens(requested *int, def, prompt int) (int, error) {
	ctxLen := w.mc.MaxPositions
	if prompt >= ctxLen {
		return 0, api.BadRequest("prompt", "This model's maximum context length is %d tokens. However, your prompt has %d tokens.", ctxLen, prompt)
	}
	if requested == nil {
		return min(def, ctxLen-prompt), nil
	}
	if *requested+prompt > ctxLen {
		return 0, api.BadRequest("max_tokens", "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			ctxLen, *requested+prompt, prompt, *requested)
	}
	return *requested, nil
}

// adapterFor maps the request's model name to an adapter ID: the base model's name is no
// adapter.
func (w *Worker) adapterFor(model string) (string, error) {
	if model == "" {
		return "", api.BadRequest("model", "model is required")
	}
	if model == w.cfg.ModelName {
		return "", nil
	}
	return model, nil
}

// checkPromptIDs refuses token ids outside the vocabulary.
func (w *Worker) checkPromptIDs(ids []int) error {
	if len(ids) == 0 {
		return api.BadRequest("prompt", "prompt is empty")
	}
	for _, id := range ids {
		if id < 0 || id >= w.mc.VocabSize {
			return api.BadRequest("prompt", "token id %d is outside the vocabulary (%d)", id, w.mc.VocabSize)
		}
	}
	return nil
}
