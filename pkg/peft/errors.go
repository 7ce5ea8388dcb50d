package peft

import "errors"

// Each refusal has its own sentinel (errors.Is-able); the wrapping error
// names the key, module or tensor at fault. All are load-time errors for
// one adapter.
var (
	// ErrPickle: only adapter_model.bin (a pickle) is present; it is never read.
	ErrPickle = errors.New("peft: adapter_model.bin is a pickle and is not loaded; convert the adapter to adapter_model.safetensors")
	// ErrNoWeights: neither adapter_model.safetensors nor adapter_model.bin.
	ErrNoWeights = errors.New("peft: no adapter_model.safetensors in the adapter directory")
	// ErrWeightsFile: adapter_model.safetensors failed safetensors validation.
	ErrWeightsFile = errors.New("peft: invalid adapter_model.safetensors")
	// ErrConfig: adapter_config.json is malformed or inconsistent.
	ErrConfig = errors.New("peft: invalid adapter_config.json")
	// ErrPeftType: peft_type is not LORA.
	ErrPeftType = errors.New("peft: only peft_type LORA is supported")
	// ErrDoRA: use_dora is true.
	ErrDoRA = errors.New("peft: DoRA (use_dora) is not supported")
	// ErrModulesToSave: modules_to_save is not empty.
	ErrModulesToSave = errors.New("peft: modules_to_save is not supported")
	// ErrBias: bias is not "none".
	ErrBias = errors.New(`peft: only bias "none" is supported`)
	// ErrLoRABias: lora_bias is true.
	ErrLoRABias = errors.New("peft: lora_bias is not supported")
	// ErrLayerReplication: layer_replication is set.
	ErrLayerReplication = errors.New("peft: layer_replication is not supported")
	// ErrTargetParameters: target_parameters is set.
	ErrTargetParameters = errors.New("peft: target_parameters is not supported")
	// ErrTrainableTokens: trainable_token_indices is set.
	ErrTrainableTokens = errors.New("peft: trainable_token_indices is not supported")
	// ErrALoRA: alora_invocation_tokens is set (activated LoRA).
	ErrALoRA = errors.New("peft: activated LoRA (alora_invocation_tokens) is not supported")
	// ErrInitWeights: init_lora_weights names a method (PiSSA, OLoRA, CorDA,
	// LoftQ, …) whose adapter only fits a modified base model unless it was
	// converted when saved, or that selects a LoRA variant.
	ErrInitWeights = errors.New("peft: init_lora_weights method needs a modified base model; save the adapter with path_initial_model_for_weight_conversion")
	// ErrUnsupportedKey: a config key this loader does not implement is set.
	ErrUnsupportedKey = errors.New("peft: unsupported adapter_config.json key is set")
	// ErrEmbedding: a target matches the embedding (embedding LoRA).
	ErrEmbedding = errors.New("peft: LoRA on embed_tokens is not supported")
	// ErrLMHead: a target matches lm_head.
	ErrLMHead = errors.New("peft: LoRA on lm_head is not supported")
	// ErrTargetNotFound: a target_modules entry matches no module of the base model.
	ErrTargetNotFound = errors.New("peft: target modules not found in the base model")
	// ErrRankTooLarge: a module's rank exceeds Options.MaxRank.
	ErrRankTooLarge = errors.New("peft: LoRA rank above the configured maximum")
	// ErrMissingTensor: a targeted module lacks its lora_A or lora_B weight.
	ErrMissingTensor = errors.New("peft: missing LoRA weight for a targeted module")
	// ErrStrayTensor: a tensor that is not lora_A/lora_B of a targeted module.
	ErrStrayTensor = errors.New("peft: unexpected tensor in adapter")
	// ErrShape: a weight's shape does not fit the base module or the rank.
	ErrShape = errors.New("peft: LoRA weight shape does not fit the base model")
	// ErrBase: the Base description itself is invalid.
	ErrBase = errors.New("peft: invalid base model description")
)
