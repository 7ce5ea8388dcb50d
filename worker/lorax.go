package worker

import (
	"context"
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/pkg/api"
	"github.com/lorafleet/lorafleet/worker/sample"
)

func (w *Worker) handleGenerate(c *fasthttp.RequestCtx)       { w.serveGenerate(c, false) }
func (w *Worker) handleGenerateStream(c *fasthttp.RequestCtx) { w.serveGenerate(c, true) }

// serveGenerate answers LoRAX's /generate and /generate_stream.
func (w *Worker) serveGenerate(c *fasthttp.RequestCtx, stream bool) {
	req, err := api.DecodeGenerate(c.PostBody())
	if err == nil {
		err = req.Validate()
	}
	if err != nil {
		writeTGIError(c, w.toAPIError(err, ""))
		return
	}
	pr := req.Parameters
	spec, err := w.generateSpec(req)
	if err != nil {
		writeTGIError(c, w.toAPIError(err, pr.AdapterID))
		return
	}
	g, err := w.start(spec)
	if err != nil {
		writeTGIError(c, w.toAPIError(err, pr.AdapterID))
		return
	}
	f := &generateFormat{w: w, g: g, details: pr.Details, seed: pr.Seed}
	if stream || req.Stream {
		w.stream(c, g, f, nil)
		return
	}
	text, toks, err := g.collect(context.Background())
	if err != nil {
		writeTGIError(c, w.toAPIError(err, pr.AdapterID))
		return
	}
	if pr.ReturnFullText {
		text = req.Inputs + text
	}
	resp := api.GenerateResponse{GeneratedText: text}
	if pr.Details {
		resp.Details = &api.GenerateDetails{FinishReason: tgiReason(g.finish), GeneratedTokens: g.generated, Seed: pr.Seed, PromptTokens: len(spec.prompt), Tokens: w.tgiTokens(toks)}
	}
	writeJSON(c, http.StatusOK, resp)
}

func (w *Worker) generateSpec(req *api.GenerateRequest) (*genSpec, error) {
	pr := req.Parameters
	prompt := w.tok.Encode(req.Inputs, true)
	if err := w.checkPromptIDs(prompt); err != nil {
		return nil, err
	}
	sp := api.Params{Temperature: pr.Temperature, TopP: pr.TopP, TopK: pr.TopK, Seed: pr.Seed, RepetitionPenalty: pr.RepetitionPenalty, IgnoreEOS: pr.IgnoreEOSToken}
	if !req.Sampled() {
		sp.Temperature = api.Ptr(0.0) // TGI is greedy unless asked to sample
	}
	p, err := w.params(&sp, 0)
	if err != nil {
		return nil, err
	}
	// Without max_new_tokens LoRAX fills the context.
	maxTok, err := w.maxTokens(pr.MaxNewTokens, w.mc.MaxPositions, len(prompt))
	if err != nil {
		return nil, err
	}
	return &genSpec{adapter: pr.AdapterID, prompt: prompt, params: p, maxTokens: maxTok, stops: pr.Stop}, nil
}

// generateFormat frames /generate_stream events: one per token, the last with the full text.
type generateFormat struct {
	w       *Worker
	g       *generation
	details bool
	seed    *int64
	text    string
}

func (f *generateFormat) events(text string, toks []sample.Result, finish string) []any {
	f.text += text
	evs := make([]any, 0, len(toks))
	for i, r := range toks {
		ev := api.StreamResponse{Token: f.w.tgiToken(r)}
		// The text that became final with these tokens goes with the first of them, so that
		// the token texts add up to generated_text (stop strings and UTF-8 held back).
		ev.Token.Text = ""
		if i == 0 {
			ev.Token.Text = text
		}
		if finish != "" && i == len(toks)-1 {
			ev.GeneratedText = api.Ptr(f.text)
			if f.details {
				ev.Details = &api.StreamDetails{FinishReason: tgiReason(finish), GeneratedTokens: f.g.generated, Seed: f.seed, PromptTokens: len(f.g.spec.prompt)}
			}
		}
		evs = append(evs, ev)
	}
	return evs
}

func (f *generateFormat) closing() ([]any, bool) { return nil, false }

func (f *generateFormat) errorFrame(e *api.Error) []byte { return api.AppendTGISSEError(nil, e) }

func (w *Worker) tgiToken(r sample.Result) api.Token {
	return api.Token{ID: r.Token, Text: w.tok.Decode([]int{r.Token}, false), Logprob: api.ClampLogprob(float64(r.Logprob)), Special: w.tok.IsSpecial(r.Token)}
}

func (w *Worker) tgiTokens(toks []sample.Result) []api.Token {
	out := make([]api.Token, len(toks))
	for i, r := range toks {
		out[i] = w.tgiToken(r)
	}
	return out
}

// tgiReason renames finish reasons as TGI and LoRAX do.
func tgiReason(r string) string {
	switch r {
	case finishString:
		return "stop_sequence"
	case finishStop:
		return "eos_token"
	}
	return "length"
}

func writeTGIError(c *fasthttp.RequestCtx, e *api.Error) {
	if e.RetryAfter > 0 {
		c.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	c.SetStatusCode(e.Status)
	c.SetContentType("application/json")
	c.SetBody(e.AppendTGIJSON(nil))
}
