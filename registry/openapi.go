package registry

import (
	"bytes"
	_ "embed"
	"net/http"
	"time"
)

// openAPI describes the admin API in OpenAPI 3.1; it is served as written.
// TestOpenAPIRoutes keeps it and the routes in step.
//
//go:embed openapi.yaml
var openAPI []byte

// serveOpenAPI answers GET and HEAD /admin/v1/openapi.yaml.
func serveOpenAPI(w http.ResponseWriter, r *http.Request, _ adminRoute) error {
	w.Header().Set("Content-Type", "application/yaml")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(openAPI))
	return nil
}
