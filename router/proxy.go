package router

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/pkg/api"
)

// generation routes: the adapter is the body's "model", or LoRAX's parameters.adapter_id.
var generation = map[string]string{
	"/v1/completions":      "model",
	"/v1/chat/completions": "model",
	"/generate":            "parameters.adapter_id",
	"/generate_stream":     "parameters.adapter_id",
}

func (r *Router) proxy(c *fasthttp.RequestCtx, field string) {
	tgi := field != "model"
	adapter, tokens, apiErr := requestInfo(c.PostBody(), field, r.cfg.BaseModel)
	if apiErr != nil {
		r.fail(c, tgi, apiErr)
		return
	}
	release, apiErr := r.admitTenant(c, adapter, tokens)
	if apiErr != nil {
		r.fail(c, tgi, apiErr)
		return
	}
	r.budget.request()
	var tried []string
	for attempt := range r.cfg.MaxAttempts {
		if attempt > 0 && !r.budget.take() {
			break
		}
		id, decision, err := r.pick(adapter, tried)
		if err != nil {
			break
		}
		tried = append(tried, id)
		u := r.worker(id)
		if u == nil {
			r.ring.Release(id)
			continue
		}
		resp, err := r.forward(c, u)
		if err != nil || resp.StatusCode() == http.StatusServiceUnavailable {
			if resp != nil {
				resp.CloseBodyStream()
				fasthttp.ReleaseResponse(resp)
			}
			r.failed(u)
			r.ring.Release(id)
			r.metrics.retries.Inc()
			continue
		}
		u.fails.Store(0)
		r.metrics.decisions.WithLabelValues(decision).Inc()
		c.Response.Header.Set("X-Lorafleet-Worker", id)
		r.respond(c, tgi, resp, func() { r.ring.Release(id); release() })
		return
	}
	release()
	r.fail(c, tgi, retryAfter(api.Unavailable("no worker could take the request")))
}

// pick chooses a worker for an adapter: the first worker in the adapter's ring order that is
// under its load cap and reports the adapter resident; failing that, the first under its cap
// in ring order (the adapter's home, or the next ones when it is full: a spill); base-model
// requests go to the least loaded worker. Workers already tried, ejected or draining are
// skipped.
func (r *Router) pick(adapter string, tried []string) (id, decision string, err error) {
	ok := func(id string) bool { return !slices.Contains(tried, id) && r.usable(id) }
	if adapter == "" {
		id, err := r.ring.LeastLoaded(ok)
		return id, "least_loaded", err
	}
	if r.cfg.Policy != PolicyBounded {
		return r.pickOther(adapter, ok)
	}
	warm := func(id string) bool {
		u := r.worker(id)
		return ok(id) && u != nil && u.resident.Load() != nil && slices.Contains(*u.resident.Load(), adapter)
	}
	if id, found := r.ring.PickUnderCap(adapter, warm); found {
		return id, "warm", nil
	}
	id, err = r.ring.PickFunc(adapter, ok)
	if err != nil {
		return "", "", err
	}
	decision = "home"
	if first := r.ring.Candidates(adapter, nil); len(first) > 0 && first[0] != id {
		decision = "spill"
	}
	return id, decision, nil
}

// forward sends the client's request to a worker and returns once the response headers are in;
// the body is still to be read.
func (r *Router) forward(c *fasthttp.RequestCtx, u *upstream) (*fasthttp.Response, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	c.Request.CopyTo(req)
	req.Header.Del("Authorization") // the tenant's key stays here
	req.SetHost(u.addr)
	resp := fasthttp.AcquireResponse()
	if err := u.client.DoTimeout(req, resp, r.cfg.UpstreamTimeout); err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	return resp, nil
}

// respond passes the worker's response on: a stream chunk by chunk as it is produced, anything
// else whole. done runs when the response has been passed on or abandoned.
func (r *Router) respond(c *fasthttp.RequestCtx, tgi bool, resp *fasthttp.Response, done func()) {
	c.SetStatusCode(resp.StatusCode())
	for _, h := range []string{"Content-Type", "Retry-After", "Cache-Control"} {
		if v := resp.Header.Peek(h); len(v) > 0 {
			c.Response.Header.SetBytesV(h, v)
		}
	}
	if !strings.HasPrefix(string(resp.Header.ContentType()), "text/event-stream") {
		b, err := io.ReadAll(resp.BodyStream())
		resp.CloseBodyStream()
		fasthttp.ReleaseResponse(resp)
		done()
		if err != nil {
			r.fail(c, tgi, api.BadGateway("the worker's response broke off"))
			return
		}
		c.SetBody(b)
		return
	}
	c.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer done()
		defer fasthttp.ReleaseResponse(resp)
		defer resp.CloseBodyStream() // a client that went away closes the worker's stream too
		buf := make([]byte, 32<<10)
		src := resp.BodyStream()
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil || w.Flush() != nil {
					return
				}
			}
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				// The worker died mid-stream: say so rather than leave the client hanging.
				e := api.BadGateway("the worker serving this stream failed")
				if tgi {
					w.Write(api.AppendTGISSEError(nil, e))
				} else {
					w.Write(api.AppendSSEError(nil, e))
					w.WriteString(api.SSEDone)
				}
				w.Flush()
				r.metrics.brokenStreams.Inc()
				return
			}
		}
	})
}

// requestInfo reads what routing needs from a request body without decoding all of it: the
// adapter ("" for the base model) and the tokens to charge (max_tokens, 16 when absent).
// The workers validate the rest.
func requestInfo(body []byte, field, base string) (adapter string, tokens int, err *api.Error) {
	if !gjson.ValidBytes(body) {
		return "", 0, api.BadRequest("", "invalid JSON body")
	}
	adapter = gjson.GetBytes(body, field).String()
	if adapter == base {
		adapter = ""
	}
	tokens = 16
	for _, f := range []string{"max_tokens", "max_completion_tokens", "parameters.max_new_tokens"} {
		if v := gjson.GetBytes(body, f); v.Exists() {
			tokens = int(max(0, min(v.Int(), 1<<30)))
		}
	}
	return adapter, tokens, nil
}

// admitTenant authenticates the request and applies its tenant's allow-list and limits.
func (r *Router) admitTenant(c *fasthttp.RequestCtx, adapter string, tokens int) (func(), *api.Error) {
	if r.cfg.Tenants == nil {
		return func() {}, nil
	}
	key, _ := strings.CutPrefix(string(c.Request.Header.Peek("Authorization")), "Bearer ")
	tn, err := r.cfg.Tenants.authenticate(key)
	if err != nil {
		return nil, api.NewError(http.StatusUnauthorized, "", "missing or invalid API key")
	}
	if !tn.allows(adapter) {
		return nil, api.ModelNotFound(r.modelName(adapter)) // the same answer as an adapter nobody has
	}
	release, wait := tn.admit(tokens, time.Now())
	if release == nil {
		e := api.TooManyRequests("tenant " + tn.spec.Name + " is over its limit")
		e.RetryAfter = max(1, int(wait.Round(time.Second)/time.Second))
		return nil, e
	}
	return release, nil
}

func (r *Router) modelName(adapter string) string {
	if adapter == "" {
		return r.cfg.BaseModel
	}
	return adapter
}

func retryAfter(e *api.Error) *api.Error {
	e.RetryAfter = 1
	return e
}

// fail writes an error in the API's shape (OpenAI, or TGI for LoRAX routes).
func (r *Router) fail(c *fasthttp.RequestCtx, tgi bool, e *api.Error) {
	if e.RetryAfter > 0 {
		c.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	c.SetStatusCode(e.Status)
	c.SetContentType("application/json")
	if tgi {
		c.SetBody(e.AppendTGIJSON(nil))
	} else {
		c.SetBody(e.JSON())
	}
}
