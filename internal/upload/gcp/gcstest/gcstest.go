// Package gcstest is a test server of the Cloud Storage JSON API's
// resumable uploads, faithful where fake-gcs-server is not: a session is
// asked how much it has with Content-Range "bytes */TOTAL" and answers 308
// with Range "bytes=0-N" (fake-gcs-server 1.56 takes that query for the
// last chunk and commits the object with what it has); a chunk must start
// at or below the persisted offset (overlapping bytes must match); a
// request whose connection is cut persists what arrived in whole 256 KiB
// units, as Cloud Storage does, so the offset to resume from is only known
// by asking. It also serves object attributes (GET), deletion (DELETE) and
// checks the md5Hash declared when the session opened. Authorization is
// not checked. It records every session event for tests to assert on.
package gcstest

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Unit is the granularity in which a cut request's bytes are persisted.
const Unit = 256 << 10

// Object is a stored object.
type Object struct {
	Bucket, Name string
	ContentType  string
	Metadata     map[string]string
	Data         []byte
	MD5          string // base64, as the API spells md5Hash
}

// Event is one thing that happened to a session.
type Event struct {
	Kind string // "start", "put", "cut", "query", "done", "cancel"
	// Start and End are the request's Content-Range (End inclusive); -1
	// for "*".
	Start, End int64
	// Persisted is the session's size after the request.
	Persisted int64
}

type session struct {
	id       string
	bucket   string
	name     string
	ctype    string
	meta     map[string]string
	md5      string
	data     []byte
	total    int64 // -1 until known
	events   []Event
	finished *Object
}

// Server is a running test server. It is safe for concurrent use.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	buckets  map[string]bool
	objects  map[string]*Object
	sessions map[string]*session
	order    []string
	next     int
}

// New starts a server with the given buckets.
func New(buckets ...string) *Server {
	s := &Server{buckets: map[string]bool{}, objects: map[string]*Object{}, sessions: map[string]*session{}}
	for _, b := range buckets {
		s.buckets[b] = true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /upload/storage/v1/b/{bucket}/o", s.start)
	mux.HandleFunc("PUT /upload/storage/v1/b/{bucket}/o", s.put)
	mux.HandleFunc("DELETE /upload/storage/v1/b/{bucket}/o", s.cancel)
	mux.HandleFunc("GET /storage/v1/b/{bucket}/o/{object...}", s.get)
	mux.HandleFunc("DELETE /storage/v1/b/{bucket}/o/{object...}", s.delete)
	s.Server = httptest.NewServer(mux)
	return s
}

// Endpoint is the JSON API endpoint to configure clients with.
func (s *Server) Endpoint() string { return s.URL + "/storage/v1/" }

// Object returns a copy of bucket/name, or nil.
func (s *Server) Object(bucket, name string) *Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[bucket+"/"+name]
	if o == nil {
		return nil
	}
	c := *o
	return &c
}

// Sessions returns the events of every session for object name, in the
// order the sessions were opened.
func (s *Server) Sessions(name string) [][]Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]Event
	for _, id := range s.order {
		if ss := s.sessions[id]; ss.name == name {
			out = append(out, append([]Event(nil), ss.events...))
		}
	}
	return out
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg, "errors": []map[string]string{{"message": msg, "domain": "global", "reason": reason(code)}},
	}})
}

func reason(code int) string {
	switch code {
	case 404:
		return "notFound"
	case 400:
		return "invalid"
	}
	return "backendError"
}

func resource(o *Object) map[string]any {
	return map[string]any{
		"kind": "storage#object", "id": o.Bucket + "/" + o.Name + "/1", "bucket": o.Bucket, "name": o.Name,
		"generation": "1", "metageneration": "1", "contentType": o.ContentType, "size": strconv.Itoa(len(o.Data)),
		"md5Hash": o.MD5, "metadata": o.Metadata,
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) start(w http.ResponseWriter, r *http.Request) {
	bucket := r.PathValue("bucket")
	if r.URL.Query().Get("uploadType") != "resumable" {
		apiError(w, 400, "gcstest serves uploadType=resumable only")
		return
	}
	if r.URL.Query().Has("upload_id") {
		apiError(w, 400, "POST to a session URI")
		return
	}
	var meta struct {
		Name        string            `json:"name"`
		ContentType string            `json:"contentType"`
		Metadata    map[string]string `json:"metadata"`
		MD5Hash     string            `json:"md5Hash"`
	}
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		if err := json.Unmarshal(b, &meta); err != nil {
			apiError(w, 400, "Parse Error: "+err.Error())
			return
		}
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		name = meta.Name
	}
	if name == "" {
		apiError(w, 400, "Required: object name")
		return
	}
	total := int64(-1)
	if v := r.Header.Get("X-Upload-Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			apiError(w, 400, "Invalid X-Upload-Content-Length")
			return
		}
		total = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.buckets[bucket] {
		apiError(w, 404, "The specified bucket does not exist.")
		return
	}
	s.next++
	ss := &session{id: fmt.Sprintf("session-%d", s.next), bucket: bucket, name: name, ctype: meta.ContentType,
		meta: meta.Metadata, md5: meta.MD5Hash, total: total}
	if ss.ctype == "" {
		ss.ctype = r.Header.Get("X-Upload-Content-Type")
	}
	ss.events = append(ss.events, Event{Kind: "start", Start: -1, End: -1})
	s.sessions[ss.id] = ss
	s.order = append(s.order, ss.id)
	w.Header().Set("Location", "http://"+r.Host+"/upload/storage/v1/b/"+url.PathEscape(bucket)+"/o?uploadType=resumable&upload_id="+ss.id)
	w.WriteHeader(http.StatusOK)
}

// contentRange parses "bytes */T", "bytes S-E/T" and "bytes S-E/*"; -1
// stands for "*".
func contentRange(h string) (start, end, total int64, err error) {
	bad := fmt.Errorf("invalid Content-Range %q", h)
	rest, ok := strings.CutPrefix(h, "bytes ")
	rng, tot, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return 0, 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total < 0 {
			return 0, 0, 0, bad
		}
	}
	if rng == "*" {
		return -1, -1, total, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 {
		return 0, 0, 0, bad
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, bad
	}
	return start, end, total, nil
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) *session {
	ss := s.sessions[r.URL.Query().Get("upload_id")]
	if ss == nil || ss.bucket != r.PathValue("bucket") {
		apiError(w, 404, "No such upload session.")
		return nil
	}
	return ss
}

// answer tells the client where the session stands: 200 with the object
// when it is complete, else 308 with the persisted range.
func (s *Server) answer(w http.ResponseWriter, ss *session) {
	if ss.finished != nil {
		writeJSON(w, 200, resource(ss.finished))
		return
	}
	if n := len(ss.data); n > 0 {
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", n-1))
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusPermanentRedirect)
}

func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	start, end, total, err := contentRange(r.Header.Get("Content-Range"))
	if err != nil {
		apiError(w, 400, err.Error())
		return
	}
	// Read the body before taking the lock: a cut shows as a read error.
	body, readErr := io.ReadAll(r.Body)

	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.session(w, r)
	if ss == nil {
		return
	}
	if total >= 0 {
		if ss.total >= 0 && ss.total != total {
			apiError(w, 400, fmt.Sprintf("Content-Range total %d differs from the upload's size %d", total, ss.total))
			return
		}
		ss.total = total
	}
	if start < 0 { // a status query, or the end of a streaming upload
		if len(body) > 0 {
			apiError(w, 400, "Content-Range bytes */N with a body")
			return
		}
		ss.events = append(ss.events, Event{Kind: "query", Start: -1, End: -1, Persisted: int64(len(ss.data))})
		if ss.finished == nil && ss.total >= 0 && int64(len(ss.data)) == ss.total {
			s.finish(w, ss)
			return
		}
		s.answer(w, ss)
		return
	}
	have := int64(len(ss.data))
	if ss.finished != nil {
		s.answer(w, ss)
		return
	}
	if start > have {
		apiError(w, 400, fmt.Sprintf("Invalid request. According to the Content-Range header, the upload offset is %d byte(s), which exceeds already uploaded size of %d byte(s).", start, have))
		return
	}
	if readErr != nil {
		// The connection was cut: whole units of what arrived are kept.
		keep := int64(len(body)) / Unit * Unit
		if start+keep > have {
			ss.data = append(ss.data, body[have-start:keep]...)
		}
		ss.events = append(ss.events, Event{Kind: "cut", Start: start, End: end, Persisted: int64(len(ss.data))})
		return
	}
	if int64(len(body)) != end-start+1 {
		apiError(w, 400, fmt.Sprintf("Content-Range %d-%d announces %d bytes, the body has %d", start, end, end-start+1, len(body)))
		return
	}
	if ss.total >= 0 && end >= ss.total {
		apiError(w, 400, fmt.Sprintf("Content-Range ends at byte %d of a %d-byte upload", end, ss.total))
		return
	}
	overlap := min(have-start, int64(len(body)))
	if string(body[:overlap]) != string(ss.data[start:start+overlap]) {
		apiError(w, 400, "Bytes sent again at an already persisted offset differ from the persisted ones.")
		return
	}
	ss.data = append(ss.data, body[overlap:]...)
	ss.events = append(ss.events, Event{Kind: "put", Start: start, End: end, Persisted: int64(len(ss.data))})
	if ss.total >= 0 && int64(len(ss.data)) == ss.total {
		s.finish(w, ss)
		return
	}
	s.answer(w, ss)
}

// finish commits the object, after checking the declared MD5.
func (s *Server) finish(w http.ResponseWriter, ss *session) {
	sum := md5.Sum(ss.data)
	got := base64.StdEncoding.EncodeToString(sum[:])
	if ss.md5 != "" && ss.md5 != got {
		delete(s.sessions, ss.id)
		apiError(w, 400, fmt.Sprintf("Provided MD5 hash %q doesn't match calculated MD5 hash %q.", ss.md5, got))
		return
	}
	o := &Object{Bucket: ss.bucket, Name: ss.name, ContentType: ss.ctype, Metadata: ss.meta, Data: ss.data, MD5: got}
	s.objects[ss.bucket+"/"+ss.name] = o
	ss.finished = o
	ss.events = append(ss.events, Event{Kind: "done", Start: -1, End: -1, Persisted: int64(len(ss.data))})
	writeJSON(w, 200, resource(o))
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.session(w, r)
	if ss == nil {
		return
	}
	ss.events = append(ss.events, Event{Kind: "cancel", Start: -1, End: -1, Persisted: int64(len(ss.data))})
	delete(s.sessions, ss.id)
	w.WriteHeader(499)
}

func (s *Server) object(w http.ResponseWriter, r *http.Request) (string, *Object) {
	key := r.PathValue("bucket") + "/" + r.PathValue("object")
	if !s.buckets[r.PathValue("bucket")] {
		apiError(w, 404, "The specified bucket does not exist.")
		return key, nil
	}
	o := s.objects[key]
	if o == nil {
		apiError(w, 404, "No such object: "+key)
	}
	return key, o
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, o := s.object(w, r); o != nil {
		if r.URL.Query().Get("alt") == "media" {
			w.Header().Set("Content-Type", o.ContentType)
			_, _ = w.Write(o.Data)
			return
		}
		writeJSON(w, 200, resource(o))
	}
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key, o := s.object(w, r); o != nil {
		delete(s.objects, key)
		w.WriteHeader(http.StatusNoContent)
	}
}
