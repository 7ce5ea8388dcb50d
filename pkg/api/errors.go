package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Error is an API error that carries its HTTP status. Every error this
// package returns is an *Error; servers write it with AppendJSON (OpenAI
// shape) or AppendTGIJSON (LoRAX shape).
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Message is shown to the client, so it never holds the text of an
	// internal failure.
	Message string
	// Type is the error's "type", vLLM style ("BadRequestError", …).
	Type string
	// Param names the request field at fault ("" writes JSON null).
	Param string
	// Code is an OpenAI-style code such as "model_not_found"; "" writes the
	// HTTP status as a number, as vLLM does.
	Code string
	// RetryAfter is the Retry-After header value in seconds (0 = no header);
	// it is not part of the body.
	RetryAfter int
}

func (e *Error) Error() string {
	return fmt.Sprintf("api: %d %s: %s", e.Status, e.Type, e.Message)
}

// Types by status: vLLM's names where it has one (BadRequestError,
// NotFoundError, InternalServerError, NotImplementedError), the OpenAI
// SDKs' exception names otherwise.
var typeByStatus = map[int]string{
	400: "BadRequestError",
	401: "AuthenticationError",
	403: "PermissionDeniedError",
	404: "NotFoundError",
	405: "MethodNotAllowedError",
	408: "RequestTimeoutError",
	409: "ConflictError",
	413: "RequestEntityTooLargeError",
	422: "UnprocessableEntityError",
	429: "RateLimitError",
	500: "InternalServerError",
	501: "NotImplementedError",
	502: "BadGatewayError",
	503: "ServiceUnavailableError",
	504: "GatewayTimeoutError",
}

// NewError returns an error with the type that goes with status.
func NewError(status int, param, message string) *Error {
	typ, ok := typeByStatus[status]
	if !ok {
		typ = "BadRequestError"
		if status >= 500 {
			typ = "InternalServerError"
		}
	}
	return &Error{Status: status, Message: message, Type: typ, Param: param}
}

// BadRequest is a 400 about the request field param ("" for none).
func BadRequest(param, format string, args ...any) *Error {
	return NewError(400, param, fmt.Sprintf(format, args...))
}

// ModelNotFound is vLLM's 404 for a model (or adapter) it does not serve.
func ModelNotFound(model string) *Error {
	return NewError(404, "model", "The model `"+model+"` does not exist.")
}

// TooManyRequests is a 429; set RetryAfter for the header.
func TooManyRequests(message string) *Error { return NewError(429, "", message) }

// Unavailable is a 503 (not ready, draining); set RetryAfter for the header.
func Unavailable(message string) *Error { return NewError(503, "", message) }

// BadGateway is a 502 (an upstream worker failed or answered nonsense).
func BadGateway(message string) *Error { return NewError(502, "", message) }

// GatewayTimeout is a 504 (an upstream worker did not answer in time).
func GatewayTimeout(message string) *Error { return NewError(504, "", message) }

// Internal is a 500 with vLLM's generic message: the cause belongs in the
// server's log, never in the response.
func Internal() *Error { return NewError(500, "", "Internal server error") }

// AsError returns the *Error in err's chain, or Internal() for any other
// error, so that a handler can write whatever it got without leaking it.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal()
}

// AppendJSON appends the OpenAI error body
// {"error":{"message","type","param","code"}}; it allocates only to grow dst.
func (e *Error) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = appendJSONString(dst, e.Message)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, e.Type)
	dst = append(dst, `,"param":`...)
	if e.Param == "" {
		dst = append(dst, "null"...)
	} else {
		dst = appendJSONString(dst, e.Param)
	}
	dst = append(dst, `,"code":`...)
	if e.Code == "" {
		dst = strconv.AppendInt(dst, int64(e.Status), 10)
	} else {
		dst = appendJSONString(dst, e.Code)
	}
	return append(dst, "}}"...)
}

// JSON returns the OpenAI error body.
func (e *Error) JSON() []byte {
	return e.AppendJSON(make([]byte, 0, 96+len(e.Message)+len(e.Type)+len(e.Param)+len(e.Code)))
}

// TGI error_type values (text-generation-inference, LoRAX); the LoRAX
// Python client picks its exception class from them.
const (
	TGIErrorValidation = "validation"
	TGIErrorOverloaded = "overloaded"
	TGIErrorGeneration = "generation"
)

// TGIErrorType maps the status to a TGI error_type: 429 and 503 are
// "overloaded" (retryable), other 4xx "validation", 5xx "generation".
func (e *Error) TGIErrorType() string {
	switch {
	case e.Status == 429 || e.Status == 503:
		return TGIErrorOverloaded
	case e.Status < 500:
		return TGIErrorValidation
	default:
		return TGIErrorGeneration
	}
}

// AppendTGIJSON appends the body LoRAX / TGI use on /generate and
// /generate_stream: {"error":"…","error_type":"…"}.
func (e *Error) AppendTGIJSON(dst []byte) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendJSONString(dst, e.Message)
	dst = append(dst, `,"error_type":`...)
	dst = appendJSONString(dst, e.TGIErrorType())
	return append(dst, '}')
}

// ErrorResponse is the OpenAI error body, for clients decoding it.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is the inside of ErrorResponse. Code is a number (vLLM: the
// HTTP status) or a string (OpenAI), hence any.
type ErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    any     `json:"code"`
}

// TGIErrorResponse is the LoRAX / TGI error body.
type TGIErrorResponse struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
}

// DecodeError reads an error body an upstream server answered with status:
// the OpenAI shape, LoRAX's, or vLLM's older flat one
// ({"object":"error","message",…}). Anything else gives a generic message.
func DecodeError(status int, body []byte) *Error {
	var v struct {
		Error json.RawMessage `json:"error"`
		ErrorBody
	}
	if json.Unmarshal(body, &v) != nil {
		return NewError(status, "", fmt.Sprintf("upstream error (HTTP %d)", status))
	}
	var nested ErrorBody
	var tgi string
	switch {
	case json.Unmarshal(v.Error, &nested) == nil && nested.Message != "":
		return fromBody(status, nested)
	case json.Unmarshal(v.Error, &tgi) == nil && tgi != "":
		return NewError(status, "", tgi)
	case v.Message != "":
		return fromBody(status, v.ErrorBody)
	}
	return NewError(status, "", fmt.Sprintf("upstream error (HTTP %d)", status))
}

func fromBody(status int, b ErrorBody) *Error {
	e := NewError(status, "", b.Message)
	if b.Type != "" {
		e.Type = b.Type
	}
	if b.Param != nil {
		e.Param = *b.Param
	}
	if code, ok := b.Code.(string); ok {
		e.Code = code
	}
	return e
}
