package worker

import (
	"context"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/pkg/api"
	"github.com/lorafleet/lorafleet/pkg/tokenizer"
	"github.com/lorafleet/lorafleet/worker/sample"
)

func (w *Worker) handleCompletions(c *fasthttp.RequestCtx) {
	req, err := api.DecodeCompletion(c.PostBody())
	if err == nil {
		err = req.Validate()
	}
	if err != nil {
		w.respondError(c, err, "")
		return
	}
	spec, echo, err := w.completionSpec(req)
	if err != nil {
		w.respondError(c, err, req.Model)
		return
	}
	g, err := w.start(spec)
	if err != nil {
		w.respondError(c, err, req.Model)
		return
	}
	f := &completionFormat{openAIStream: w.newOpenAIStream("cmpl-", req.Model, req.Logprobs != nil, req.IncludeUsage(), g)}
	if req.Stream {
		var first []any
		if echo != "" {
			first = f.events(echo, nil, "")
		}
		w.stream(c, g, f, first)
		return
	}
	text, toks, err := g.collect(context.Background())
	if err != nil {
		w.respondError(c, err, req.Model)
		return
	}
	choice := api.CompletionChoice{Index: 0, Text: echo + text, FinishReason: api.Ptr(openAIReason(g.finish))}
	if f.logprobs {
		choice.Logprobs = w.completionLogprobs(toks, len(echo))
	}
	writeJSON(c, http.StatusOK, api.CompletionResponse{
		ID: f.id, Object: api.ObjectTextCompletion, Created: f.created, Model: req.Model,
		Choices: []api.CompletionChoice{choice}, Usage: f.usageOf(),
	})
}

// completionSpec turns a completion request into a generation; echo is the prompt text to
// prepend when the request asks for it.
func (w *Worker) completionSpec(req *api.CompletionRequest) (*genSpec, string, error) {
	if req.NOrDefault() != 1 {
		return nil, "", api.BadRequest("n", "n > 1 is not supported")
	}
	adapter, err := w.adapterFor(req.Model)
	if err != nil {
		return nil, "", err
	}
	prompt, text, err := w.completionPrompt(req.Prompt)
	if err != nil {
		return nil, "", err
	}
	p, err := w.params(&req.Params, req.NumLogprobs())
	if err != nil {
		return nil, "", err
	}
	maxTok, err := w.maxTokens(req.MaxTokens, api.DefaultMaxTokens, len(prompt))
	if err != nil {
		return nil, "", err
	}
	spec := &genSpec{adapter: adapter, prompt: prompt, params: p, maxTokens: maxTok, stops: req.Stop}
	if !req.Echo {
		text = ""
	}
	return spec, text, nil
}

// completionPrompt accepts one prompt, as text or token ids, and returns its ids and text.
func (w *Worker) completionPrompt(p api.Prompt) ([]int, string, error) {
	texts, ids := p.Strings, p.Tokens
	switch {
	case len(texts)+len(ids) != 1:
		return nil, "", api.BadRequest("prompt", "exactly one prompt per request is supported, got %d", len(texts)+len(ids))
	case len(texts) == 1:
		toks := w.tok.Encode(texts[0], true)
		return toks, texts[0], w.checkPromptIDs(toks)
	}
	return ids[0], w.tok.Decode(ids[0], false), w.checkPromptIDs(ids[0])
}

// openAIStream is what the completions and chat responses of one generation share.
type openAIStream struct {
	w               *Worker
	id, model       string
	created         int64
	logprobs, usage bool
	g               *generation
}

func (w *Worker) newOpenAIStream(idPrefix, model string, logprobs, usage bool, g *generation) openAIStream {
	return openAIStream{w: w, id: api.NewID(idPrefix), created: time.Now().Unix(), model: model, logprobs: logprobs, usage: usage, g: g}
}

func (f *openAIStream) usageOf() *api.Usage {
	prompt := len(f.g.spec.prompt)
	return &api.Usage{PromptTokens: prompt, CompletionTokens: f.g.generated, TotalTokens: prompt + f.g.generated}
}

func (f *openAIStream) errorFrame(e *api.Error) []byte { return api.AppendSSEError(nil, e) }

// completionFormat frames /v1/completions stream chunks.
type completionFormat struct {
	openAIStream
	offset int // text offset of the next token, for logprobs
}

func (f *completionFormat) events(text string, toks []sample.Result, finish string) []any {
	if text == "" && finish == "" && !f.logprobs {
		return nil
	}
	ch := api.CompletionChoice{Index: 0, Text: text}
	if finish != "" {
		ch.FinishReason = api.Ptr(openAIReason(finish))
	}
	if f.logprobs && len(toks) > 0 {
		ch.Logprobs = f.w.completionLogprobs(toks, f.offset)
	}
	f.offset += len(text)
	return []any{api.CompletionResponse{ID: f.id, Object: api.ObjectTextCompletion, Created: f.created, Model: f.model, Choices: []api.CompletionChoice{ch}}}
}

func (f *completionFormat) closing() ([]any, bool) {
	if !f.usage {
		return nil, true
	}
	return []any{api.CompletionResponse{ID: f.id, Object: api.ObjectTextCompletion, Created: f.created, Model: f.model, Choices: []api.CompletionChoice{}, Usage: f.usageOf()}}, true
}

// completionLogprobs lays out the legacy completions logprobs.
func (w *Worker) completionLogprobs(toks []sample.Result, offset int) *api.CompletionLogprobs {
	lp := &api.CompletionLogprobs{}
	for _, r := range toks {
		s := w.tok.Decode([]int{r.Token}, false)
		lp.Tokens = append(lp.Tokens, s)
		lp.TokenLogprobs = append(lp.TokenLogprobs, api.ClampLogprob(float64(r.Logprob)))
		lp.TextOffset = append(lp.TextOffset, offset)
		offset += len(s)
		top := make(map[string]float64, len(r.Top))
		for _, t := range r.Top {
			top[w.tok.Decode([]int{t.Token}, false)] = api.ClampLogprob(float64(t.Logprob))
		}
		lp.TopLogprobs = append(lp.TopLogprobs, top)
	}
	return lp
}

func (w *Worker) handleChat(c *fasthttp.RequestCtx) {
	req, err := api.DecodeChat(c.PostBody())
	if err == nil {
		err = req.Validate()
	}
	if err != nil {
		w.respondError(c, err, "")
		return
	}
	spec, err := w.chatSpec(req)
	if err != nil {
		w.respondError(c, err, req.Model)
		return
	}
	g, err := w.start(spec)
	if err != nil {
		w.respondError(c, err, req.Model)
		return
	}
	f := &chatFormat{openAIStream: w.newOpenAIStream("chatcmpl-", req.Model, req.Logprobs, req.IncludeUsage(), g)}
	if req.Stream {
		w.stream(c, g, f, []any{f.chunk(api.ChatDelta{Role: api.RoleAssistant}, nil, "")})
		return
	}
	text, toks, err := g.collect(context.Background())
	if err != nil {
		w.respondError(c, err, req.Model)
		return
	}
	choice := api.ChatChoice{Index: 0, Message: api.ChatMessage{Role: api.RoleAssistant, Content: api.TextContent(text)}, FinishReason: openAIReason(g.finish)}
	if f.logprobs {
		choice.Logprobs = w.chatLogprobs(toks)
	}
	writeJSON(c, http.StatusOK, api.ChatCompletionResponse{
		ID: f.id, Object: api.ObjectChatCompletion, Created: f.created, Model: req.Model,
		Choices: []api.ChatChoice{choice}, Usage: f.usageOf(),
	})
}

func (w *Worker) chatSpec(req *api.ChatCompletionRequest) (*genSpec, error) {
	if req.NOrDefault() != 1 {
		return nil, api.BadRequest("n", "n > 1 is not supported")
	}
	adapter, err := w.adapterFor(req.Model)
	if err != nil {
		return nil, err
	}
	prompt, err := w.chatPrompt(req.Messages, true)
	if err != nil {
		return nil, err
	}
	p, err := w.params(&req.Params, req.NumLogprobs())
	if err != nil {
		return nil, err
	}
	requested := req.MaxTokens
	if req.MaxCompletionTokens != nil {
		requested = req.MaxCompletionTokens
	}
	// Chat has no default limit: the rest of the context, as in vLLM.
	maxTok, err := w.maxTokens(requested, w.mc.MaxPositions, len(prompt))
	if err != nil {
		return nil, err
	}
	return &genSpec{adapter: adapter, prompt: prompt, params: p, maxTokens: maxTok, stops: req.Stop}, nil
}

// chatPrompt renders messages with the model's chat template.
func (w *Worker) chatPrompt(msgs []api.ChatMessage, addGeneration bool) ([]int, error) {
	if !w.tok.HasChatTemplate() {
		return nil, api.BadRequest("messages", "the model has no chat template; use /v1/completions")
	}
	conv := make([]tokenizer.Message, len(msgs))
	for i, m := range msgs {
		conv[i] = tokenizer.Message{Role: m.Role, Content: m.Content.String()}
	}
	text, err := w.tok.ApplyChatTemplate(conv, addGeneration)
	if err != nil {
		return nil, api.BadRequest("messages", "chat template: %v", err)
	}
	ids := w.tok.Encode(text, false) // the template writes BOS itself
	return ids, w.checkPromptIDs(ids)
}

// chatFormat frames /v1/chat/completions stream chunks.
type chatFormat struct{ openAIStream }

func (f *chatFormat) chunk(delta api.ChatDelta, toks []sample.Result, finish string) api.ChatCompletionChunk {
	ch := api.ChatChunkChoice{Index: 0, Delta: delta}
	if finish != "" {
		ch.FinishReason = api.Ptr(openAIReason(finish))
	}
	if f.logprobs && len(toks) > 0 {
		ch.Logprobs = f.w.chatLogprobs(toks)
	}
	return api.ChatCompletionChunk{ID: f.id, Object: api.ObjectChatCompletionChunk, Created: f.created, Model: f.model, Choices: []api.ChatChunkChoice{ch}}
}

func (f *chatFormat) events(text string, toks []sample.Result, finish string) []any {
	if text == "" && finish == "" && !f.logprobs {
		return nil
	}
	return []any{f.chunk(api.ChatDelta{Content: text}, toks, finish)}
}

func (f *chatFormat) closing() ([]any, bool) {
	if !f.usage {
		return nil, true
	}
	return []any{api.ChatCompletionChunk{ID: f.id, Object: api.ObjectChatCompletionChunk, Created: f.created, Model: f.model, Choices: []api.ChatChunkChoice{}, Usage: f.usageOf()}}, true
}

func (w *Worker) chatLogprobs(toks []sample.Result) *api.ChatLogprobs {
	lp := &api.ChatLogprobs{Content: make([]api.ChatTokenLogprob, 0, len(toks))}
	for _, r := range toks {
		s := w.tok.Decode([]int{r.Token}, false)
		t := api.ChatTokenLogprob{Token: s, Logprob: api.ClampLogprob(float64(r.Logprob)), Bytes: bytesOf(s), TopLogprobs: make([]api.ChatTopLogprob, 0, len(r.Top))}
		for _, top := range r.Top {
			ts := w.tok.Decode([]int{top.Token}, false)
			t.TopLogprobs = append(t.TopLogprobs, api.ChatTopLogprob{Token: ts, Logprob: api.ClampLogprob(float64(top.Logprob)), Bytes: bytesOf(ts)})
		}
		lp.Content = append(lp.Content, t)
	}
	return lp
}

func bytesOf(s string) []int {
	b := make([]int, len(s))
	for i := range len(s) {
		b[i] = int(s[i])
	}
	return b
}
