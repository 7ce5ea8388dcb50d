package api

// TokenizeRequest is the body of vLLM's POST /tokenize: either a prompt
// or chat messages (rendered with the chat template first).
type TokenizeRequest struct {
	// Model names the base model or an adapter. Required.
	Model string `json:"model"`
	// Prompt is the text form (may be empty).
	Prompt *string `json:"prompt,omitempty"`
	// Messages is the chat form.
	Messages []ChatMessage `json:"messages,omitzero"`
	// AddSpecialTokens: see AddSpecialTokensOrDefault.
	AddSpecialTokens *bool `json:"add_special_tokens,omitempty"`
	// AddGenerationPrompt (chat form): see AddGenerationPromptOrDefault.
	AddGenerationPrompt *bool `json:"add_generation_prompt,omitempty"`
	// ReturnTokenStrs asks for TokenizeResponse.TokenStrs.
	ReturnTokenStrs bool `json:"return_token_strs,omitempty"`
}

// DecodeTokenize decodes and checks the shape of a /tokenize body; every
// error is a 400 *Error.
func DecodeTokenize(body []byte) (*TokenizeRequest, error) {
	r := new(TokenizeRequest)
	members, err := decodeObject(body, r)
	if err != nil {
		return nil, err
	}
	if r.Messages != nil {
		if err := checkUnsupported(members, templateUnsupported, ""); err != nil {
			return nil, err
		}
	}
	if err := r.checkRequired(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *TokenizeRequest) checkRequired() error {
	switch {
	case r.Model == "":
		return missing("model")
	case r.Prompt == nil && r.Messages == nil:
		return BadRequest("prompt", "either `prompt` or `messages` is required")
	case r.Prompt != nil && r.Messages != nil:
		return BadRequest("messages", "set either `prompt` or `messages`, not both")
	}
	return nil
}

// AddSpecialTokensOrDefault is add_special_tokens; vLLM's default is true
// for a prompt and false for messages (the template adds them).
func (r *TokenizeRequest) AddSpecialTokensOrDefault() bool {
	if r.AddSpecialTokens != nil {
		return *r.AddSpecialTokens
	}
	return r.Messages == nil
}

// AddGenerationPromptOrDefault is add_generation_prompt, true when absent.
func (r *TokenizeRequest) AddGenerationPromptOrDefault() bool {
	return r.AddGenerationPrompt == nil || *r.AddGenerationPrompt
}

// Validate checks the request; the error is a 400 *Error.
func (r *TokenizeRequest) Validate() error {
	if err := r.checkRequired(); err != nil {
		return err
	}
	if r.Messages != nil {
		return validateMessages(r.Messages)
	}
	return nil
}

// TokenizeResponse is vLLM's /tokenize response.
type TokenizeResponse struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	Tokens      []int    `json:"tokens"` // [] rather than null
	TokenStrs   []string `json:"token_strs,omitempty"`
}

// MarshalJSON writes tokens as [] rather than null.
func (r TokenizeResponse) MarshalJSON() ([]byte, error) {
	type plain TokenizeResponse
	r.Tokens = nonNil(r.Tokens)
	return marshalPlain(plain(r))
}
