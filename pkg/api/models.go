package api

// ModelList is the GET /v1/models response.
type ModelList struct {
	Object string  `json:"object"` // ObjectList
	Data   []Model `json:"data"`   // [] rather than null
}

// MarshalJSON writes data as [] rather than null.
func (l ModelList) MarshalJSON() ([]byte, error) {
	type plain ModelList
	l.Data = nonNil(l.Data)
	return marshalPlain(plain(l))
}

// Model is one served model: the base model, or an adapter whose Parent
// is the base model's id (as vLLM lists LoRA adapters).
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // ObjectModel
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Root is where the weights come from (vLLM: the model or adapter path).
	Root string `json:"root"`
	// Parent is null for the base model.
	Parent *string `json:"parent"`
	// MaxModelLen is the context length (vLLM's max_model_len).
	MaxModelLen int `json:"max_model_len"`
}
