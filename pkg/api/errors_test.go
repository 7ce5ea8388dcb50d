package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/api"
)

func TestErrorBodies(t *testing.T) {
	cases := []struct {
		err  *api.Error
		want string
	}{
		// vLLM 0.8+ answers an unknown model exactly so.
		{api.ModelNotFound("sql-lora"),
			"{\"error\":{\"message\":\"The model `sql-lora` does not exist.\",\"type\":\"NotFoundError\",\"param\":\"model\",\"code\":404}}"},
		{api.BadRequest("max_tokens", "`max_tokens` must be at least 1, got %d", 0),
			"{\"error\":{\"message\":\"`max_tokens` must be at least 1, got 0\",\"type\":\"BadRequestError\",\"param\":\"max_tokens\",\"code\":400}}"},
		{api.BadRequest("", "request body is empty"),
			`{"error":{"message":"request body is empty","type":"BadRequestError","param":null,"code":400}}`},
		{api.TooManyRequests("queue full"),
			`{"error":{"message":"queue full","type":"RateLimitError","param":null,"code":429}}`},
		{api.Unavailable("draining"),
			`{"error":{"message":"draining","type":"ServiceUnavailableError","param":null,"code":503}}`},
		{api.BadGateway("worker w1 failed"),
			`{"error":{"message":"worker w1 failed","type":"BadGatewayError","param":null,"code":502}}`},
		{api.GatewayTimeout("worker w1 timed out"),
			`{"error":{"message":"worker w1 timed out","type":"GatewayTimeoutError","param":null,"code":504}}`},
		{api.Internal(),
			`{"error":{"message":"Internal server error","type":"InternalServerError","param":null,"code":500}}`},
		{&api.Error{Status: 404, Message: "m", Type: "invalid_request_error", Param: "model", Code: "model_not_found"},
			`{"error":{"message":"m","type":"invalid_request_error","param":"model","code":"model_not_found"}}`},
		{api.NewError(401, "", "bad key"),
			`{"error":{"message":"bad key","type":"AuthenticationError","param":null,"code":401}}`},
		{api.NewError(418, "", "x"), `{"error":{"message":"x","type":"BadRequestError","param":null,"code":418}}`},
		{api.NewError(599, "", "x"), `{"error":{"message":"x","type":"InternalServerError","param":null,"code":599}}`},
	}
	for _, c := range cases {
		if got := string(c.err.JSON()); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
		var back api.ErrorResponse
		if err := json.Unmarshal(c.err.JSON(), &back); err != nil || back.Error.Message != c.err.Message {
			t.Errorf("%s does not decode as an ErrorResponse: %+v %v", c.want, back, err)
		}
	}
}

func TestErrorEscaping(t *testing.T) {
	msg := "quote \" backslash \\ newline \n tab \t nul \x00 bell \x07 bad \xff\xfe end é 😀 \u2028"
	e := api.BadRequest("p\"", "%s", msg)
	var back api.ErrorResponse
	if err := json.Unmarshal(e.JSON(), &back); err != nil {
		t.Fatalf("invalid JSON %q: %v", e.JSON(), err)
	}
	// encoding/json reads each invalid byte as U+FFFD, as []rune does.
	if want := string([]rune(msg)); back.Error.Message != want || *back.Error.Param != `p"` {
		t.Errorf("round trip: %q param %q, want %q", back.Error.Message, *back.Error.Param, want)
	}
}

func TestErrorAppendDoesNotAllocate(t *testing.T) {
	e := api.ModelNotFound("some-adapter")
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		buf = e.AppendJSON(buf[:0])
		buf = e.AppendTGIJSON(buf[:0])
		buf = api.AppendSSEError(buf[:0], e)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}

func TestTGIErrors(t *testing.T) {
	cases := []struct {
		err  *api.Error
		want string
	}{
		{api.BadRequest("parameters.top_k", "`top_k` must be strictly positive"), `{"error":"` + "`top_k` must be strictly positive" + `","error_type":"validation"}`},
		{api.ModelNotFound("x"), "{\"error\":\"The model `x` does not exist.\",\"error_type\":\"validation\"}"},
		{api.TooManyRequests("Model is overloaded"), `{"error":"Model is overloaded","error_type":"overloaded"}`},
		{api.Unavailable("draining"), `{"error":"draining","error_type":"overloaded"}`},
		{api.Internal(), `{"error":"Internal server error","error_type":"generation"}`},
		{api.GatewayTimeout("t"), `{"error":"t","error_type":"generation"}`},
	}
	for _, c := range cases {
		if got := string(c.err.AppendTGIJSON(nil)); got != c.want {
			t.Errorf("got %s, want %s", got, c.want)
		}
		var back api.TGIErrorResponse
		if err := json.Unmarshal(c.err.AppendTGIJSON(nil), &back); err != nil || back.Error != c.err.Message || back.ErrorType != c.err.TGIErrorType() {
			t.Errorf("%s decodes to %+v, %v", c.want, back, err)
		}
	}
}

func TestAsError(t *testing.T) {
	bad := api.BadRequest("n", "x")
	if api.AsError(fmt.Errorf("worker: %w", bad)) != bad {
		t.Error("AsError must find a wrapped *Error")
	}
	got := api.AsError(errors.New("cuda: out of memory at 0xdeadbeef"))
	if got.Status != 500 || strings.Contains(got.Message, "cuda") {
		t.Errorf("an internal error must become a generic 500, got %+v", got)
	}
	if !strings.Contains(bad.Error(), "400") || !strings.Contains(bad.Error(), "x") {
		t.Errorf("Error() = %q", bad.Error())
	}
}

func TestDecodeError(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   api.Error
	}{
		{404, "{\"error\":{\"message\":\"The model `x` does not exist.\",\"type\":\"NotFoundError\",\"param\":\"model\",\"code\":404}}",
			api.Error{Status: 404, Message: "The model `x` does not exist.", Type: "NotFoundError", Param: "model"}},
		{429, `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			api.Error{Status: 429, Message: "Rate limit reached", Type: "requests", Code: "rate_limit_exceeded"}},
		{422, `{"error":"Input validation error: inputs cannot be empty","error_type":"validation"}`,
			api.Error{Status: 422, Message: "Input validation error: inputs cannot be empty", Type: "UnprocessableEntityError"}},
		{400, `{"object":"error","message":"old vLLM","type":"BadRequestError","param":null,"code":400}`,
			api.Error{Status: 400, Message: "old vLLM", Type: "BadRequestError"}},
		{502, `<html>Bad Gateway</html>`, api.Error{Status: 502, Message: "upstream error (HTTP 502)", Type: "BadGatewayError"}},
		{500, `{"detail":"x"}`, api.Error{Status: 500, Message: "upstream error (HTTP 500)", Type: "InternalServerError"}},
		{503, ``, api.Error{Status: 503, Message: "upstream error (HTTP 503)", Type: "ServiceUnavailableError"}},
	}
	for _, c := range cases {
		if got := api.DecodeError(c.status, []byte(c.body)); *got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.body, *got, c.want)
		}
	}
}
