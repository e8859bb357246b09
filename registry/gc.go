package registry

import (
	"context"
	"errors"
	"net/http"

	"github.com/berthhq/berth/gc"
)

// collect runs garbage collection now (POST) or reports what a run would
// delete (GET), answering with the run's report.
func (reg *Registry) collect(w http.ResponseWriter, r *http.Request, _ adminRoute) error {
	if reg.gc == nil {
		return newError(http.StatusNotImplemented, codeUnsupported, "this server runs no garbage collector")
	}
	// Not the request's context: a client or proxy that gives up (a run
	// waits gc.link-deadline) must not cut the run short between deleting
	// bytes and forgetting them.
	rep, err := reg.gc.Run(context.WithoutCancel(r.Context()), r.Method != http.MethodPost)
	if errors.Is(err, gc.ErrRunning) {
		e := newError(http.StatusConflict, codeGCRunning, "a garbage collection is running (here or on another replica); try again when it ends")
		e.header = http.Header{"Retry-After": {"10"}}
		return e
	}
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", rep)
}
