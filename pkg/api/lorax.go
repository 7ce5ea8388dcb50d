package api

// TGI / LoRAX finish reasons.
const (
	TGIFinishLength       = "length"
	TGIFinishEOSToken     = "eos_token"
	TGIFinishStopSequence = "stop_sequence"
)

// GenerateRequest is the body of LoRAX's POST /generate and
// /generate_stream (and of POST /, where Stream picks the route).
type GenerateRequest struct {
	// Inputs is the prompt. Required, not empty.
	Inputs     string             `json:"inputs"`
	Parameters GenerateParameters `json:"parameters"`
	// Stream is only read by POST /; a /generate_stream handler sets it
	// before Validate.
	Stream bool `json:"stream,omitempty"`
}

// GenerateParameters are LoRAX's "parameters". A nil pointer is absent.
type GenerateParameters struct {
	// AdapterID names the adapter; "" is the base model.
	AdapterID string `json:"adapter_id,omitempty"`
	// AdapterSource is where AdapterID lives ("hub", "local", "s3", …).
	AdapterSource string `json:"adapter_source,omitempty"`
	// MaxNewTokens: see MaxNewTokensOr.
	MaxNewTokens *int `json:"max_new_tokens,omitempty"`
	// Temperature: default 1; must be > 0 (TGI). See Sampled.
	Temperature *float64 `json:"temperature,omitempty"`
	// TopP: in (0, 1) when set (TGI).
	TopP *float64 `json:"top_p,omitempty"`
	// TopK: > 0 when set (TGI).
	TopK *int `json:"top_k,omitempty"`
	// RepetitionPenalty: default 1; > 0.
	RepetitionPenalty *float64 `json:"repetition_penalty,omitempty"`
	// Seed: >= 0 (TGI's is a u64).
	Seed *int64 `json:"seed,omitempty"`
	// Stop strings end generation.
	Stop []string `json:"stop,omitzero"`
	// DoSample samples; without it (and without any warper) decoding is greedy.
	DoSample bool `json:"do_sample,omitempty"`
	// Details asks for GenerateResponse.Details.
	Details bool `json:"details,omitempty"`
	// DecoderInputDetails asks for the prompt tokens in Details.Prefill;
	// TGI refuses it when streaming.
	DecoderInputDetails bool `json:"decoder_input_details,omitempty"`
	// ReturnFullText puts Inputs in front of the generated text.
	ReturnFullText bool `json:"return_full_text,omitempty"`
	// IgnoreEOSToken keeps generating past EOS (LoRAX).
	IgnoreEOSToken bool `json:"ignore_eos_token,omitempty"`
}

// DecodeGenerate decodes and checks the shape of a LoRAX generate body;
// every error is a 400 *Error (write it with AppendTGIJSON).
func DecodeGenerate(body []byte) (*GenerateRequest, error) {
	r := new(GenerateRequest)
	members, err := decodeObject(body, r)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if keyString(m.key) == "parameters" {
			if err := checkUnsupported(objectMembers(m.val), generateUnsupported, "parameters."); err != nil {
				return nil, err
			}
		}
	}
	if r.Inputs == "" {
		return nil, BadRequest("inputs", "`inputs` cannot be empty")
	}
	return r, nil
}

// MaxNewTokensOr is max_new_tokens, else unbounded: LoRAX then fills the
// context, so the caller passes the room left in it.
func (r *GenerateRequest) MaxNewTokensOr(unbounded int) int {
	if r.Parameters.MaxNewTokens == nil {
		return unbounded
	}
	return *r.Parameters.MaxNewTokens
}

// Sampled reports whether tokens are sampled rather than chosen greedily:
// TGI samples when do_sample is set or any warper is (temperature ≠ 1,
// top_k, top_p < 1).
func (r *GenerateRequest) Sampled() bool {
	p := &r.Parameters
	return p.DoSample ||
		(p.Temperature != nil && *p.Temperature != 1) ||
		(p.TopK != nil && *p.TopK > 0) ||
		(p.TopP != nil && *p.TopP < 1)
}

// Validate checks the request with TGI's rules and messages; the error is
// a 400 *Error.
func (r *GenerateRequest) Validate() error {
	p := &r.Parameters
	switch {
	case r.Inputs == "":
		return BadRequest("inputs", "`inputs` cannot be empty")
	case p.MaxNewTokens != nil && *p.MaxNewTokens < 1:
		return BadRequest("parameters.max_new_tokens", "`max_new_tokens` must be strictly positive")
	case p.Temperature != nil && !(*p.Temperature > 0):
		return BadRequest("parameters.temperature", "`temperature` must be strictly positive")
	case p.TopP != nil && !(*p.TopP > 0 && *p.TopP < 1):
		return BadRequest("parameters.top_p", "`top_p` must be > 0.0 and < 1.0")
	case p.TopK != nil && *p.TopK <= 0:
		return BadRequest("parameters.top_k", "`top_k` must be strictly positive")
	case p.RepetitionPenalty != nil && !(*p.RepetitionPenalty > 0):
		return BadRequest("parameters.repetition_penalty", "`repetition_penalty` must be strictly positive")
	case p.Seed != nil && *p.Seed < 0:
		return BadRequest("parameters.seed", "`seed` must not be negative")
	case r.Stream && p.DecoderInputDetails:
		return BadRequest("parameters.decoder_input_details", "`decoder_input_details` == true is not supported when streaming tokens")
	}
	return validateTGIStop(p.Stop)
}

func validateTGIStop(stop []string) error {
	if len(stop) > MaxStop {
		return BadRequest("parameters.stop", "`stop` supports up to %d stop sequences. Given: %d", MaxStop, len(stop))
	}
	for i, s := range stop {
		if s == "" {
			return BadRequest("parameters.stop", "`stop[%d]` must not be empty", i)
		}
	}
	return nil
}

// GenerateResponse is the /generate response.
type GenerateResponse struct {
	GeneratedText string           `json:"generated_text"`
	Details       *GenerateDetails `json:"details,omitempty"`
}

// GenerateDetails describes a finished generation.
type GenerateDetails struct {
	FinishReason    string         `json:"finish_reason"` // TGIFinish…
	PromptTokens    int            `json:"prompt_tokens"`
	GeneratedTokens int            `json:"generated_tokens"`
	Seed            *int64         `json:"seed"` // null when greedy
	Prefill         []PrefillToken `json:"prefill"`
	Tokens          []Token        `json:"tokens"`
}

// MarshalJSON writes prefill and tokens as [] rather than null.
func (d GenerateDetails) MarshalJSON() ([]byte, error) {
	type plain GenerateDetails
	d.Prefill, d.Tokens = nonNil(d.Prefill), nonNil(d.Tokens)
	return marshalPlain(plain(d))
}

// PrefillToken is a prompt token; the first one has no logprob (null).
type PrefillToken struct {
	ID      int      `json:"id"`
	Text    string   `json:"text"`
	Logprob *float64 `json:"logprob"`
}

// Token is a generated token; Logprob must be finite (ClampLogprob).
type Token struct {
	ID      int     `json:"id"`
	Text    string  `json:"text"`
	Logprob float64 `json:"logprob"`
	Special bool    `json:"special"`
}

// StreamResponse is one /generate_stream event, one per token.
// GeneratedText and Details are null but on the last event.
type StreamResponse struct {
	Token         Token          `json:"token"`
	GeneratedText *string        `json:"generated_text"`
	Details       *StreamDetails `json:"details"`
}

// StreamDetails ends a stream.
type StreamDetails struct {
	FinishReason    string `json:"finish_reason"`
	PromptTokens    int    `json:"prompt_tokens"`
	GeneratedTokens int    `json:"generated_tokens"`
	Seed            *int64 `json:"seed"`
}
