package http

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIDocument checks the embedded document: valid JSON, OpenAPI 3, every
// collector route documented with POST and OPTIONS, and every local $ref resolving.
func TestOpenAPIDocument(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi = %q, want 3.x", v)
	}
	paths, _ := doc["paths"].(map[string]any)
	if len(paths) == 0 {
		t.Fatal("no paths")
	}
	for _, p := range collectorPaths {
		path := "/v1/" + p.path
		item, ok := paths[path].(map[string]any)
		if !ok {
			t.Errorf("collector path %s is not documented", path)
			continue
		}
		for _, method := range []string{"post", "options"} {
			if _, ok := item[method]; !ok {
				t.Errorf("%s lacks %s", path, method)
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		item, ok := paths[path].(map[string]any)
		if !ok || item["get"] == nil {
			t.Errorf("GET %s is not documented", path)
		}
	}
	// Nothing is documented that the server does not route.
	routed := map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true, "/openapi.json": true}
	for _, p := range slices.Concat(profilePaths, consentPaths, apiKeyPaths, auditPaths, dataUsePaths, privacyPaths, recommendPaths, portalPaths) {
		routed[p] = true
		if _, ok := paths[p]; !ok {
			t.Errorf("profile API path %s is not documented", p)
		}
	}
	for _, p := range collectorPaths {
		routed["/v1/"+p.path] = true
	}
	for path := range paths {
		if !routed[path] {
			t.Errorf("%s is documented but not routed", path)
		}
	}
	// Every documented error status of a collector POST uses the error shape, and
	// the statuses the collector answers with are all there.
	post := paths["/v1/track"].(map[string]any)["post"].(map[string]any)
	responses := post["responses"].(map[string]any)
	for _, code := range []string{"200", "400", "401", "403", "405", "413", "415", "429", "500", "503"} {
		if _, ok := responses[code]; !ok {
			t.Errorf("POST /v1/track does not document %s", code)
		}
	}
	for _, code := range []string{"400", "401", "403", "405", "413", "415", "429", "500", "503"} {
		r := resolve(t, doc, responses[code])
		content, _ := r["content"].(map[string]any)
		js, _ := content["application/json"].(map[string]any)
		schema, _ := js["schema"].(map[string]any)
		if schema["$ref"] != "#/components/schemas/Error" {
			t.Errorf("%s response schema = %v, want the Error schema", code, schema)
		}
	}
	for _, code := range []string{"429", "503"} {
		r := resolve(t, doc, responses[code])
		if h, _ := r["headers"].(map[string]any); h["Retry-After"] == nil {
			t.Errorf("%s response does not document Retry-After", code)
		}
	}
	// The error codes the server can send are the documented enum.
	codes := resolve(t, doc, map[string]any{"$ref": "#/components/schemas/Error"})["properties"].(map[string]any)["error"].(map[string]any)["properties"].(map[string]any)["code"].(map[string]any)["enum"].([]any)
	documented := map[string]bool{}
	for _, c := range codes {
		documented[c.(string)] = true
	}
	for code := range statuses {
		if !documented[code] {
			t.Errorf("error code %q is not in the documented enum", code)
		}
	}
	// The basic auth scheme for the write key.
	scheme := resolve(t, doc, map[string]any{"$ref": "#/components/securitySchemes/writeKey"})
	if scheme["type"] != "http" || scheme["scheme"] != "basic" {
		t.Errorf("writeKey security scheme = %v", scheme)
	}
	// Every local $ref resolves.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["$ref"]; ok {
				resolve(t, doc, v)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
}

// resolve follows a local $ref (if v is one) to its target.
func resolve(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("not an object: %v", v)
	}
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	if !strings.HasPrefix(ref, "#/") {
		t.Fatalf("non-local $ref %q", ref)
	}
	var cur any = doc
	for _, part := range strings.Split(ref[2:], "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("$ref %q does not resolve", ref)
		}
		if cur, ok = obj[part]; !ok {
			t.Fatalf("$ref %q does not resolve", ref)
		}
	}
	return resolve(t, doc, cur)
}
