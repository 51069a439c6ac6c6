package standin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
)

// router is axum's Router as the services use it: exact paths and `:param`
// segments, 404 with an empty body for an unknown path, 405 for a known
// path and another method, and GET routes answering HEAD.
type router struct {
	routes []route
	limit  int64 // body limit of the Json extractor
}

type route struct {
	method string
	segs   []string
	h      func(w http.ResponseWriter, r *http.Request, params map[string]string)
}

// axumBodyLimit is axum 0.7's DefaultBodyLimit for extractors (2 MB).
const axumBodyLimit = 2 << 20

func newRouter() *router { return &router{limit: axumBodyLimit} }

func (rt *router) handle(method, path string, h func(w http.ResponseWriter, r *http.Request, params map[string]string)) {
	rt.routes = append(rt.routes, route{method, strings.Split(path, "/"), h})
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(r.URL.Path, "/")
	var allow []string
	for _, ro := range rt.routes {
		params, ok := match(ro.segs, segs)
		if !ok {
			continue
		}
		if ro.method == r.Method || (ro.method == http.MethodGet && r.Method == http.MethodHead) {
			ro.h(w, r, params)
			return
		}
		allow = append(allow, ro.method)
	}
	if len(allow) > 0 {
		sort.Strings(allow)
		w.Header().Set("Allow", strings.Join(allow, ","))
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	w.WriteHeader(http.StatusNotFound)
}

func match(pattern, path []string) (map[string]string, bool) {
	if len(pattern) != len(path) {
		return nil, false
	}
	params := map[string]string{}
	for i, p := range pattern {
		switch {
		case strings.HasPrefix(p, ":"):
			if path[i] == "" {
				return nil, false
			}
			params[p[1:]] = path[i]
		case p != path[i]:
			return nil, false
		}
	}
	return params, true
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // serde_json does not escape <, >, &
	enc.Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// obj is a JSON object with the field order serde gives a struct.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.k)
		b.Write(k)
		b.WriteByte(':')
		var vb bytes.Buffer
		enc := json.NewEncoder(&vb)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(f.v); err != nil {
			return nil, err
		}
		b.Write(bytes.TrimSuffix(vb.Bytes(), []byte("\n")))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jsonBody is axum 0.7's Json<T> extractor: 415 unless the content type is
// application/json or application/*+json, 413 over the body limit, 400 for
// a syntax error, then the caller's decode decides 422 (a data error:
// missing field, wrong type). It writes the rejection and reports false.
func (rt *router) jsonBody(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	if !jsonContentType(r.Header.Get("Content-Type")) {
		writeText(w, http.StatusUnsupportedMediaType, "Expected request with `Content-Type: application/json`")
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, rt.limit+1))
	if err != nil {
		writeText(w, http.StatusBadRequest, "Failed to buffer the request body: "+err.Error())
		return nil, false
	}
	if int64(len(b)) > rt.limit {
		writeText(w, http.StatusRequestEntityTooLarge, "Failed to buffer the request body: length limit exceeded")
		return nil, false
	}
	if !json.Valid(b) {
		writeText(w, http.StatusBadRequest, "Failed to parse the request body as JSON")
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		dataError(w, errors.New("invalid type: expected struct"))
		return nil, false
	}
	return m, true
}

func dataError(w http.ResponseWriter, err error) {
	writeText(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: "+err.Error())
}

func jsonContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	typ, sub, ok := strings.Cut(mt, "/")
	return ok && typ == "application" && (sub == "json" || strings.HasSuffix(sub, "+json"))
}

// fields decodes serde-style required fields of a JSON object: each target
// must be present (unless optional) and of the right type.
type field struct {
	name     string
	dst      any
	optional bool
}

func decodeFields(m map[string]json.RawMessage, fs ...field) error {
	for _, f := range fs {
		raw, ok := m[f.name]
		if !ok || (f.optional && string(raw) == "null") {
			if f.optional {
				continue
			}
			return fmt.Errorf("missing field `%s`", f.name)
		}
		if err := strictUnmarshal(raw, f.dst); err != nil {
			return fmt.Errorf("%s: %v", f.name, err)
		}
	}
	return nil
}

// strictUnmarshal is json.Unmarshal that refuses null for non-pointer
// targets, as serde does.
func strictUnmarshal(raw json.RawMessage, dst any) error {
	if string(bytes.TrimSpace(raw)) == "null" {
		return errors.New("invalid type: null")
	}
	return json.Unmarshal(raw, dst)
}

// bodyLimit is the broker's BROKER_REQUEST_BODY_LIMIT_BYTES: a malformed
// value falls back to the default (lib.rs @0ccd509b, id 55742513417).
func bodyLimit(name string, def int64) int64 {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.ParseUint(v, 10, 63); err == nil {
			return int64(n)
		}
	}
	return def
}
