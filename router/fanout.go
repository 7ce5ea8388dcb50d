package router

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/pkg/api"
)

// fanoutTimeout bounds each worker's answer to a listing or admin request.
const fanoutTimeout = 30 * time.Second

type fanoutResult struct {
	status int
	body   []byte
	err    error
}

// fanout sends a copy of the request to every worker (with headers, the Authorization header
// only when keepAuth) and returns their answers.
func (r *Router) fanout(c *fasthttp.RequestCtx, keepAuth bool) []fanoutResult {
	r.mu.RLock()
	ups := make([]*upstream, 0, len(r.workers))
	for _, u := range r.workers {
		ups = append(ups, u)
	}
	r.mu.RUnlock()
	out := make([]fanoutResult, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			c.Request.CopyTo(req)
			if !keepAuth {
				req.Header.Del("Authorization")
			}
			req.SetHost(u.addr)
			client := &fasthttp.HostClient{Addr: u.addr} // not the streaming client: bodies are read whole
			if err := client.DoTimeout(req, resp, fanoutTimeout); err != nil {
				out[i].err = err
				return
			}
			out[i] = fanoutResult{status: resp.StatusCode(), body: slices.Clone(resp.Body())}
		})
	}
	wg.Wait()
	return out
}

// models merges the workers' model lists and keeps what the caller's tenant may use.
func (r *Router) models(c *fasthttp.RequestCtx) {
	var tn *tenant
	if r.cfg.Tenants != nil {
		key, _ := strings.CutPrefix(string(c.Request.Header.Peek("Authorization")), "Bearer ")
		var err error
		if tn, err = r.cfg.Tenants.authenticate(key); err != nil {
			r.fail(c, false, api.NewError(http.StatusUnauthorized, "", "missing or invalid API key"))
			return
		}
	}
	merged := api.ModelList{Object: api.ObjectList}
	seen := map[string]bool{}
	for _, res := range r.fanout(c, false) {
		var l api.ModelList
		if res.err != nil || res.status != http.StatusOK || json.Unmarshal(res.body, &l) != nil {
			continue // a worker that cannot answer lists nothing; the others still do
		}
		for _, m := range l.Data {
			adapter := m.ID
			if m.Parent == nil {
				adapter = "" // the base model
			}
			if seen[m.ID] || tn != nil && !tn.allows(adapter) {
				continue
			}
			seen[m.ID] = true
			merged.Data = append(merged.Data, m)
		}
	}
	slices.SortFunc(merged.Data, func(a, b api.Model) int { return strings.Compare(a.ID, b.ID) })
	b, _ := json.Marshal(merged)
	c.SetContentType("application/json")
	c.SetBody(b)
}

// admin sends an adapter load or unload to every worker; it needs the admin key, which the
// workers share.
func (r *Router) admin(c *fasthttp.RequestCtx) {
	if r.cfg.AdminToken == "" {
		r.fail(c, false, api.NewError(http.StatusForbidden, "", "admin routes are disabled (no admin token configured)"))
		return
	}
	want := []byte("Bearer " + r.cfg.AdminToken)
	if subtle.ConstantTimeCompare(c.Request.Header.Peek("Authorization"), want) != 1 {
		r.fail(c, false, api.NewError(http.StatusUnauthorized, "", "invalid admin token"))
		return
	}
	results := r.fanout(c, true)
	if len(results) == 0 {
		r.fail(c, false, retryAfter(api.Unavailable("no workers")))
		return
	}
	for _, res := range results {
		if res.err != nil {
			r.fail(c, false, api.BadGateway("a worker did not answer: the change may be partial"))
			return
		}
		if res.status != http.StatusOK {
			c.SetStatusCode(res.status)
			c.SetContentType("application/json")
			c.SetBody(res.body)
			return
		}
	}
	c.SetBody(results[0].body)
}
