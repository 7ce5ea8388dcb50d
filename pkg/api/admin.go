package api

// LoadLoRARequest is the body of vLLM's POST /v1/load_lora_adapter.
type LoadLoRARequest struct {
	LoRAName string `json:"lora_name"`
	LoRAPath string `json:"lora_path"`
}

// UnloadLoRARequest is the body of vLLM's POST /v1/unload_lora_adapter.
type UnloadLoRARequest struct {
	LoRAName string `json:"lora_name"`
}

// DecodeLoadLoRA decodes a load request; both fields are required.
func DecodeLoadLoRA(body []byte) (*LoadLoRARequest, error) {
	r := new(LoadLoRARequest)
	if _, err := decodeObject(body, r); err != nil {
		return nil, err
	}
	switch {
	case r.LoRAName == "":
		return nil, missing("lora_name")
	case r.LoRAPath == "":
		return nil, missing("lora_path")
	}
	return r, nil
}

// DecodeUnloadLoRA decodes an unload request; lora_name is required.
func DecodeUnloadLoRA(body []byte) (*UnloadLoRARequest, error) {
	r := new(UnloadLoRARequest)
	if _, err := decodeObject(body, r); err != nil {
		return nil, err
	}
	if r.LoRAName == "" {
		return nil, missing("lora_name")
	}
	return r, nil
}
