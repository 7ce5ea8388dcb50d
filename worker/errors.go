package worker

import (
	"errors"
	"fmt"

	"github.com/lorafleet/lorafleet/pkg/api"
	"github.com/lorafleet/lorafleet/worker/adapterstore"
	"github.com/lorafleet/lorafleet/worker/engine"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// toAPIError turns an internal error into the status and message a client sees. Messages of
// known errors are meant for clients; anything else is logged and answered with a generic 500.
func (w *Worker) toAPIError(err error, model string) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	var pe *sample.ParamError
	switch {
	case errors.As(err, &pe):
		return api.BadRequest(pe.Param, "%s", pe.Reason)
	case errors.Is(err, adapterstore.ErrNotFound):
		return api.ModelNotFound(model)
	case errors.Is(err, adapterstore.ErrInvalidID):
		return api.BadRequest("model", "invalid adapter id %q: %v", model, err)
	case errors.Is(err, adapterstore.ErrBadAdapter):
		return api.BadRequest("model", "adapter %q cannot be loaded: %v", model, err)
	case errors.Is(err, adapterstore.ErrFetchTimeout):
		return api.GatewayTimeout(fmt.Sprintf("adapter %q: hub download timed out", model))
	case errors.Is(err, adapterstore.ErrFetch):
		return api.BadGateway(fmt.Sprintf("adapter %q: hub download failed: %v", model, err))
	case errors.Is(err, engine.ErrOverloaded):
		return retryAfter(api.TooManyRequests("the server is at capacity; retry later"))
	case errors.Is(err, engine.ErrDraining), errors.Is(err, engine.ErrAborted):
		return errShuttingDown()
	case errors.Is(err, engine.ErrTooLong):
		return api.BadRequest("", "%v", err)
	}
	w.log.Error("request failed", "err", err)
	return api.Internal()
}

func errShuttingDown() *api.Error {
	return retryAfter(api.Unavailable("the server is shutting down"))
}

func retryAfter(e *api.Error) *api.Error {
	e.RetryAfter = 1
	return e
}
