package worker

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/lorafleet/lorafleet/pkg/api"
)

type route struct {
	method string
	handle func(*fasthttp.RequestCtx)
	gen    bool // a generation endpoint: counted in flight, refused while draining
}

func (w *Worker) routes() map[string]route {
	metrics := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(w.metrics.reg, promhttp.HandlerOpts{}))
	return map[string]route{
		"/v1/completions":         {http.MethodPost, w.handleCompletions, true},
		"/v1/chat/completions":    {http.MethodPost, w.handleChat, true},
		"/generate":               {http.MethodPost, w.handleGenerate, true},
		"/generate_stream":        {http.MethodPost, w.handleGenerateStream, true},
		"/v1/models":              {http.MethodGet, w.handleModels, false},
		"/tokenize":               {http.MethodPost, w.handleTokenize, false},
		"/v1/load_lora_adapter":   {http.MethodPost, w.admin(w.handleLoadLoRA), false},
		"/v1/unload_lora_adapter": {http.MethodPost, w.admin(w.handleUnloadLoRA), false},
		"/healthz":                {http.MethodGet, func(c *fasthttp.RequestCtx) { c.SetBodyString("ok") }, false},
		"/readyz":                 {http.MethodGet, w.handleReady, false},
		"/metrics":                {http.MethodGet, metrics, false},
	}
}

func (w *Worker) handle(c *fasthttp.RequestCtx) {
	r, ok := w.router[string(c.Path())]
	switch {
	case !ok:
		writeError(c, api.NewError(http.StatusNotFound, "", "no route "+string(c.Path())))
	case string(c.Method()) != r.method:
		c.Response.Header.Set("Allow", r.method)
		writeError(c, api.NewError(http.StatusMethodNotAllowed, "", "use "+r.method))
	case r.gen && w.draining.Load():
		writeError(c, errShuttingDown())
	case r.gen:
		w.inflight.Add(1)
		r.handle(c)
		if !c.IsBodyStream() {
			w.inflight.Add(-1) // a streaming body decrements when its writer ends
		}
	default:
		r.handle(c)
	}
}

func (w *Worker) handleReady(c *fasthttp.RequestCtx) {
	s := w.loop.Stats()
	switch {
	case w.draining.Load():
		c.SetStatusCode(http.StatusServiceUnavailable)
		c.SetBodyString("draining")
	case s.Running+s.Waiting > 0 && time.Since(s.LastStep) > w.cfg.StuckAfter:
		c.SetStatusCode(http.StatusServiceUnavailable)
		c.SetBodyString("engine stuck: no step for " + time.Since(s.LastStep).Round(time.Second).String())
	default:
		c.SetBodyString("ready")
	}
}

func (w *Worker) handleModels(c *fasthttp.RequestCtx) {
	root := w.cfg.ModelName
	list := api.ModelList{Object: api.ObjectList, Data: []api.Model{{ID: root, Object: api.ObjectModel, Created: w.created, OwnedBy: "lorafleet", Root: root, MaxModelLen: w.mc.MaxPositions}}}
	for _, id := range w.store.Known() {
		list.Data = append(list.Data, api.Model{ID: id, Object: api.ObjectModel, Created: w.created, OwnedBy: "lorafleet", Root: id, Parent: &root, MaxModelLen: w.mc.MaxPositions})
	}
	writeJSON(c, http.StatusOK, list)
}

func (w *Worker) handleTokenize(c *fasthttp.RequestCtx) {
	req, err := api.DecodeTokenize(c.PostBody())
	if err == nil {
		err = req.Validate()
	}
	if err != nil {
		writeError(c, w.toAPIError(err, ""))
		return
	}
	var ids []int
	if req.Prompt == nil {
		ids, err = w.chatPrompt(req.Messages, req.AddGenerationPromptOrDefault())
	} else {
		ids = w.tok.Encode(*req.Prompt, req.AddSpecialTokensOrDefault())
	}
	if err != nil {
		writeError(c, w.toAPIError(err, req.Model))
		return
	}
	writeJSON(c, http.StatusOK, api.TokenizeResponse{Count: len(ids), MaxModelLen: w.mc.MaxPositions, Tokens: ids})
}

// admin guards a handler with the admin bearer token.
func (w *Worker) admin(h func(*fasthttp.RequestCtx)) func(*fasthttp.RequestCtx) {
	return func(c *fasthttp.RequestCtx) {
		if w.cfg.AdminToken == "" {
			writeError(c, api.NewError(http.StatusForbidden, "", "admin endpoints are disabled (no admin token configured)"))
			return
		}
		got := c.Request.Header.Peek("Authorization")
		want := []byte("Bearer " + w.cfg.AdminToken)
		if subtle.ConstantTimeCompare(got, want) != 1 {
			writeError(c, api.NewError(http.StatusUnauthorized, "", "invalid admin token"))
			return
		}
		h(c)
	}
}

func (w *Worker) handleLoadLoRA(c *fasthttp.RequestCtx) {
	req, err := api.DecodeLoadLoRA(c.PostBody())
	if err == nil {
		err = w.store.Register(c, req.LoRAName, req.LoRAPath)
	}
	if err != nil {
		writeError(c, w.toAPIError(err, loraName(req)))
		return
	}
	w.loop.Unload(req.LoRAName) // a device copy of an earlier version must not serve the new one
	c.SetBodyString("Success: LoRA adapter '" + req.LoRAName + "' added successfully.")
}

func (w *Worker) handleUnloadLoRA(c *fasthttp.RequestCtx) {
	req, err := api.DecodeUnloadLoRA(c.PostBody())
	if err == nil {
		err = w.store.Unregister(req.LoRAName)
	}
	if err != nil {
		name := ""
		if req != nil {
			name = req.LoRAName
		}
		writeError(c, w.toAPIError(err, name))
		return
	}
	w.loop.Unload(req.LoRAName)
	c.SetBodyString("Success: LoRA adapter '" + req.LoRAName + "' removed successfully.")
}

func writeJSON(c *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"message":"internal error","type":"InternalServerError"}}`)
	}
	c.SetStatusCode(status)
	c.SetContentType("application/json")
	c.SetBody(b)
}

func loraName(r *api.LoadLoRARequest) string {
	if r == nil {
		return ""
	}
	return r.LoRAName
}

func writeError(c *fasthttp.RequestCtx, e *api.Error) {
	if e.RetryAfter > 0 {
		c.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	c.SetStatusCode(e.Status)
	c.SetContentType("application/json")
	c.SetBody(e.JSON())
}
