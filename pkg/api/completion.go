package api

import "fmt"

// Object names of the OpenAI responses.
const (
	ObjectTextCompletion      = "text_completion"
	ObjectChatCompletion      = "chat.completion"
	ObjectChatCompletionChunk = "chat.completion.chunk"
	ObjectList                = "list"
	ObjectModel               = "model"
)

// OpenAI finish reasons.
const (
	FinishStop   = "stop"   // EOS, a stop string or a stop token
	FinishLength = "length" // max_tokens or the context length
)

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	// Model names the base model or an adapter. Required.
	Model string `json:"model"`
	// Prompt is required and not empty.
	Prompt Prompt `json:"prompt,omitzero"`
	// MaxTokens: see MaxTokensOrDefault.
	MaxTokens *int `json:"max_tokens,omitempty"`
	// Logprobs asks for this many top logprobs per token besides the
	// chosen one's (0 = only the chosen one's).
	Logprobs *int `json:"logprobs,omitempty"`
	// Echo puts the prompt in front of the completion text.
	Echo bool `json:"echo,omitempty"`
	Params
}

// DecodeCompletion decodes and checks the shape of a /v1/completions body;
// every error is a 400 *Error. Call Validate for the ranges.
func DecodeCompletion(body []byte) (*CompletionRequest, error) {
	r := new(CompletionRequest)
	members, err := decodeObject(body, r)
	if err != nil {
		return nil, err
	}
	if err := checkUnsupported(members, completionUnsupported, ""); err != nil {
		return nil, err
	}
	if err := r.checkRequired(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CompletionRequest) checkRequired() error {
	switch {
	case r.Model == "":
		return missing("model")
	case r.Prompt.Form == PromptNone:
		return missing("prompt")
	}
	return nil
}

// MaxTokensOrDefault is max_tokens, DefaultMaxTokens (16) when absent.
func (r *CompletionRequest) MaxTokensOrDefault() int {
	if r.MaxTokens == nil {
		return DefaultMaxTokens
	}
	return *r.MaxTokens
}

// NumLogprobs is the number of top logprobs asked for, -1 for none.
func (r *CompletionRequest) NumLogprobs() int {
	if r.Logprobs == nil {
		return -1
	}
	return *r.Logprobs
}

// Validate checks the request against the API's ranges; the error is a
// 400 *Error whose Param names the field.
func (r *CompletionRequest) Validate() error {
	if err := r.checkRequired(); err != nil {
		return err
	}
	if err := validatePrompt(r.Prompt); err != nil {
		return err
	}
	if err := validateMaxTokens("max_tokens", r.MaxTokens); err != nil {
		return err
	}
	if err := validateLogprobs("logprobs", r.Logprobs); err != nil {
		return err
	}
	if r.Echo && r.Logprobs != nil {
		// It needs the logprobs of the prompt tokens, which are not computed.
		return BadRequest("echo", "`echo` together with `logprobs` is not supported by this server")
	}
	return r.Params.validate(r.Prompt.Len(), r.MaxTokensOrDefault())
}

func validatePrompt(p Prompt) error {
	if p.Len() == 0 {
		return BadRequest("prompt", "`prompt` must not be empty")
	}
	for i, s := range p.Strings {
		if s == "" {
			return BadRequest("prompt", "%s must not be empty", promptIndex(p, i))
		}
	}
	for i, ids := range p.Tokens {
		if len(ids) == 0 {
			return BadRequest("prompt", "%s must not be empty", promptIndex(p, i))
		}
		for j, id := range ids {
			if id < 0 {
				return BadRequest("prompt", "%s[%d] must be a token id, got %d", promptIndex(p, i), j, id)
			}
		}
	}
	return nil
}

func promptIndex(p Prompt, i int) string {
	if p.Form == PromptString || p.Form == PromptTokens {
		return "`prompt`"
	}
	return fmt.Sprintf("`prompt[%d]`", i)
}

// CompletionResponse is the /v1/completions response, and each streamed
// chunk (then Usage is nil but on the usage chunk).
type CompletionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"` // ObjectTextCompletion
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"` // [] on the usage chunk, never null
	Usage   *Usage             `json:"usage,omitempty"`
}

// MarshalJSON writes choices as [] rather than null.
func (r CompletionResponse) MarshalJSON() ([]byte, error) {
	type plain CompletionResponse
	r.Choices = nonNil(r.Choices)
	return marshalPlain(plain(r))
}

// CompletionChoice is one choice; Logprobs and FinishReason are null
// until set (FinishReason is null in stream chunks before the last).
type CompletionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *CompletionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

// CompletionLogprobs is the legacy logprobs object, one entry per token.
// Logprobs must be finite: see ClampLogprob.
type CompletionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// Usage counts tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}
