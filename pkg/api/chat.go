package api

import "fmt"

// Chat roles. "developer" is OpenAI's newer name for "system".
const (
	RoleSystem    = "system"
	RoleDeveloper = "developer"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// ChatMessage is one message of a conversation, and the message of a
// chat completion choice.
type ChatMessage struct {
	Role    string      `json:"role"`
	Content ChatContent `json:"content"`
	Name    string      `json:"name,omitempty"`
}

// ChatCompletionRequest is the body of POST /v1/chat/completions.
type ChatCompletionRequest struct {
	// Model names the base model or an adapter. Required.
	Model string `json:"model"`
	// Messages is required and not empty.
	Messages []ChatMessage `json:"messages,omitzero"`
	// MaxTokens is the deprecated spelling of MaxCompletionTokens.
	MaxTokens *int `json:"max_tokens,omitempty"`
	// MaxCompletionTokens takes precedence over MaxTokens.
	MaxCompletionTokens *int `json:"max_completion_tokens,omitempty"`
	// Logprobs asks for the chosen tokens' logprobs.
	Logprobs bool `json:"logprobs,omitempty"`
	// TopLogprobs asks for that many alternatives per token; needs Logprobs.
	TopLogprobs *int `json:"top_logprobs,omitempty"`
	Params
}

// DecodeChat decodes and checks the shape of a /v1/chat/completions body;
// every error is a 400 *Error. Call Validate for the ranges.
func DecodeChat(body []byte) (*ChatCompletionRequest, error) {
	r := new(ChatCompletionRequest)
	members, err := decodeObject(body, r)
	if err != nil {
		return nil, err
	}
	if err := checkUnsupported(members, chatUnsupported, ""); err != nil {
		return nil, err
	}
	if err := r.checkRequired(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *ChatCompletionRequest) checkRequired() error {
	switch {
	case r.Model == "":
		return missing("model")
	case r.Messages == nil:
		return missing("messages")
	}
	return nil
}

// MaxTokensOr is max_completion_tokens, else max_tokens, else unbounded:
// OpenAI and vLLM then generate until the context is full, so the caller
// passes the room left in the context.
func (r *ChatCompletionRequest) MaxTokensOr(unbounded int) int {
	switch {
	case r.MaxCompletionTokens != nil:
		return *r.MaxCompletionTokens
	case r.MaxTokens != nil:
		return *r.MaxTokens
	}
	return unbounded
}

// NumLogprobs is the number of top logprobs asked for, -1 for none.
func (r *ChatCompletionRequest) NumLogprobs() int {
	switch {
	case !r.Logprobs:
		return -1
	case r.TopLogprobs != nil:
		return *r.TopLogprobs
	}
	return 0
}

// Validate checks the request against the API's ranges; the error is a
// 400 *Error whose Param names the field.
func (r *ChatCompletionRequest) Validate() error {
	if err := r.checkRequired(); err != nil {
		return err
	}
	if err := validateMessages(r.Messages); err != nil {
		return err
	}
	if err := validateMaxTokens("max_tokens", r.MaxTokens); err != nil {
		return err
	}
	if err := validateMaxTokens("max_completion_tokens", r.MaxCompletionTokens); err != nil {
		return err
	}
	if err := validateLogprobs("top_logprobs", r.TopLogprobs); err != nil {
		return err
	}
	if r.TopLogprobs != nil && *r.TopLogprobs > 0 && !r.Logprobs {
		return BadRequest("top_logprobs", "`top_logprobs` requires `logprobs` to be true")
	}
	return r.Params.validate(1, r.MaxTokensOr(0))
}

func validateMessages(msgs []ChatMessage) error {
	if len(msgs) == 0 {
		return BadRequest("messages", "`messages` must not be empty")
	}
	for i, m := range msgs {
		if err := validateMessage(i, m); err != nil {
			return err
		}
	}
	return nil
}

func validateMessage(i int, m ChatMessage) error {
	switch m.Role {
	case RoleSystem, RoleDeveloper, RoleUser, RoleAssistant, RoleTool:
	case "":
		return BadRequest(fmt.Sprintf("messages[%d].role", i), "`messages[%d].role` is required", i)
	default:
		return BadRequest(fmt.Sprintf("messages[%d].role", i),
			"`messages[%d].role` must be system, developer, user, assistant or tool, got %q", i, m.Role)
	}
	for j, p := range m.Content.Parts {
		if p.Type != "text" {
			return BadRequest(fmt.Sprintf("messages[%d].content[%d].type", i, j),
				"only text content parts are supported, got %q in messages[%d].content[%d]", p.Type, i, j)
		}
	}
	return nil
}

// ChatCompletionResponse is the non-streaming /v1/chat/completions response.
type ChatCompletionResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"` // ObjectChatCompletion
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage,omitempty"`
}

// MarshalJSON writes choices as [] rather than null.
func (r ChatCompletionResponse) MarshalJSON() ([]byte, error) {
	type plain ChatCompletionResponse
	r.Choices = nonNil(r.Choices)
	return marshalPlain(plain(r))
}

// ChatChoice is one choice of a chat completion.
type ChatChoice struct {
	Index        int           `json:"index"`
	Message      ChatMessage   `json:"message"` // Role is RoleAssistant
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

// ChatLogprobs holds one entry per generated token.
type ChatLogprobs struct {
	Content []ChatTokenLogprob `json:"content"`
}

// ChatTokenLogprob is a generated token's logprob and its alternatives.
// Logprobs must be finite (ClampLogprob); Bytes is the token's UTF-8 bytes
// (null when it has none); TopLogprobs is an array, empty rather than nil.
type ChatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []ChatTopLogprob `json:"top_logprobs"`
}

// ChatTopLogprob is one alternative.
type ChatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// ChatCompletionChunk is one event of a streamed chat completion. The
// usage chunk (stream_options.include_usage) has no choices and Usage set.
type ChatCompletionChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"` // ObjectChatCompletionChunk
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []ChatChunkChoice `json:"choices"` // [] on the usage chunk, never null
	Usage   *Usage            `json:"usage,omitempty"`
}

// MarshalJSON writes choices as [] rather than null.
func (c ChatCompletionChunk) MarshalJSON() ([]byte, error) {
	type plain ChatCompletionChunk
	c.Choices = nonNil(c.Choices)
	return marshalPlain(plain(c))
}

// ChatChunkChoice is one choice's increment; FinishReason is null but on
// its last chunk.
type ChatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        ChatDelta     `json:"delta"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

// ChatDelta is the new part of the message: Role on the first chunk,
// Content on the others; the last chunk's delta is often empty ({}).
type ChatDelta struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content,omitempty"`
}
