package worker

import (
	"bufio"
	"context"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/pkg/api"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// streamFormat is how one API frames a generation as server-sent events.
type streamFormat interface {
	// events for text and tokens just generated; finish is set on the last call.
	events(text string, toks []sample.Result, finish string) []any
	// closing events after the last tokens (a usage chunk), and whether to end with [DONE].
	closing() (events []any, done bool)
	// errorFrame is the SSE frame of an error after the stream has begun.
	errorFrame(e *api.Error) []byte
}

// keepAlive is how often an idle stream (queued, or between slow tokens) writes an SSE
// comment: that is how a client that went away is noticed, since fasthttp reports a
// disconnect only as a failed write.
const keepAlive = time.Second

// stream answers with server-sent events. The handler returns at once; the body writer runs
// the generation to its end, or until the client disconnects, which frees the sequence.
func (w *Worker) stream(c *fasthttp.RequestCtx, g *generation, f streamFormat, first []any) {
	c.SetContentType("text/event-stream")
	c.Response.Header.Set("Cache-Control", "no-cache")
	c.SetBodyStreamWriter(func(bw *bufio.Writer) {
		defer w.inflight.Add(-1)
		defer g.abort()
		// Send the headers now, as vLLM does, not with the first token: a client sees its
		// request accepted while it waits in the queue.
		if _, err := bw.WriteString(": accepted\n\n"); err != nil || writeEvents(bw, first) != nil || bw.Flush() != nil {
			return
		}
		for {
			text, toks, done, err := g.nextOrKeepAlive()
			switch {
			case errors.Is(err, errIdle):
				if _, err := bw.WriteString(": keep-alive\n\n"); err != nil || bw.Flush() != nil {
					return
				}
				continue
			case err != nil:
				bw.Write(f.errorFrame(w.toAPIError(err, "")))
				if _, done := f.closing(); done {
					bw.WriteString(api.SSEDone)
				}
				bw.Flush()
				return
			}
			var fin string
			if done {
				fin = g.finish
			}
			if writeEvents(bw, f.events(text, toks, fin)) != nil {
				return
			}
			if done {
				evs, sendDone := f.closing()
				if writeEvents(bw, evs) == nil && sendDone {
					bw.WriteString(api.SSEDone)
				}
				bw.Flush()
				return
			}
		}
	})
}

var errIdle = errors.New("worker: no tokens for a while")

// nextOrKeepAlive waits at most keepAlive for tokens.
func (g *generation) nextOrKeepAlive() (string, []sample.Result, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keepAlive)
	defer cancel()
	text, toks, done, err := g.next(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return text, toks, done, errIdle
	}
	return text, toks, done, err
}

// writeEvents writes and flushes events; an error means the client is gone.
func writeEvents(bw *bufio.Writer, evs []any) error {
	if len(evs) == 0 {
		return nil
	}
	var buf []byte
	for _, ev := range evs {
		var err error
		if buf, err = api.AppendSSE(buf, ev); err != nil {
			return err
		}
	}
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	return bw.Flush()
}

// respondError writes an error before any body was sent.
func (w *Worker) respondError(c *fasthttp.RequestCtx, err error, model string) {
	writeError(c, w.toAPIError(err, model))
}
