// Package api holds the wire types of the HTTP APIs lorafleet serves, as
// OpenAI, vLLM and LoRAX clients send and expect them: /v1/completions,
// /v1/chat/completions, /v1/models, vLLM's /tokenize and LoRA admin
// endpoints, and LoRAX's /generate and /generate_stream. The router, the
// worker and the load generator share it; it imports the standard library
// only.
//
// Decode* functions turn a request body into its type and refuse, with a
// 400 *Error naming the field, what the Python servers refuse: malformed
// JSON, a body that is not an object, a wrong type, a missing required
// field, and strings that are not valid UTF-8 (encoding/json would replace
// them silently). Fields that those servers define but lorafleet does not
// implement are refused when set to anything but their no-op value; fields
// nobody defines are ignored. Validate methods check the ranges.
//
// Errors are *Error values carrying their HTTP status; AppendJSON writes
// the OpenAI body, AppendTGIJSON the LoRAX one. AppendSSE and friends
// frame server-sent events.
package api
