// Package probe performs one testAll HTTP check: a GET with a per-attempt
// timeout, retries with a short backoff, and a verdict that says what went
// wrong in plain words.
//
// It uses only the standard library on purpose: the same file is compiled
// into the network probe (cmd/probe), a static binary that check builds
// from embedded source in a throwaway module, so it must not need any
// module download.
package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// ImageRepo is the repository the probe's images are tagged in (see
// check.EnsureProbe), each tag a hash of the probe's source. It is here,
// in a package that imports nothing of the runner, so that render can name
// it in test-all.sh, which looks for the probe there.
const ImageRepo = "maestro-deploy/probe"

// Spec is one check to perform.
type Spec struct {
	// ID is echoed in the Outcome so results can be matched to requests.
	ID string `json:"id"`
	// URL is the full address to GET.
	URL string `json:"url"`
	// Status is the expected HTTP status (0 = 200).
	Status int `json:"status,omitempty"`
	// Contains, when set, must occur in the body.
	Contains string `json:"contains,omitempty"`
	// JSONField (dotted path) and JSONEquals, when set, require the body to
	// be a JSON object whose field equals the value.
	JSONField  string `json:"json_field,omitempty"`
	JSONEquals string `json:"json_equals,omitempty"`
	// TimeoutMS bounds each attempt (0: DefaultTimeout).
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// Retries after a failed attempt.
	Retries int `json:"retries,omitempty"`
}

// Outcome is the verdict of a Spec.
type Outcome struct {
	ID string `json:"id"`
	OK bool   `json:"ok"`
	// Status is the HTTP status of the last attempt (0 = no response).
	Status int `json:"status"`
	// LatencyMicros is the duration of the last attempt.
	LatencyMicros int64 `json:"latency_us"`
	// Attempts made (1 + retries used).
	Attempts int `json:"attempts"`
	// Detail says why the check failed ("" when it passed).
	Detail string `json:"detail,omitempty"`
}

// Latency returns the duration of the last attempt.
func (o Outcome) Latency() time.Duration { return time.Duration(o.LatencyMicros) * time.Microsecond }

// maxBody bounds what is read of a response: checks look at health
// documents, not downloads.
const maxBody = 1 << 20

// Client returns an HTTP client for checks. It ignores proxy settings:
// checks must reach the service itself, and an HTTP_PROXY meant for the
// internet would otherwise swallow requests to 127.0.0.1 or stack names.
func Client() *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr,
		// A redirect is an answer worth judging, not following.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// DefaultTimeout bounds each attempt of a Spec that sets no TimeoutMS.
const DefaultTimeout = 2 * time.Second

// timeout is how long each attempt of s may take.
func (s Spec) timeout() time.Duration {
	if s.TimeoutMS <= 0 {
		return DefaultTimeout
	}
	return time.Duration(s.TimeoutMS) * time.Millisecond
}

// WorstCase is how long Do may take for s: every attempt timing out and
// every backoff waited. Whoever runs a probe bounds the run by it.
func (s Spec) WorstCase() time.Duration {
	total := s.timeout() * time.Duration(s.Retries+1)
	for n := 1; n <= s.Retries; n++ {
		total += Backoff(n)
	}
	return total
}

// Backoff is the pause before retry n (1-based): short, because a check
// that is still failing after a second or two is failing.
func Backoff(n int) time.Duration {
	d := 100 * time.Millisecond << (n - 1)
	if d > time.Second || d <= 0 {
		d = time.Second
	}
	return d
}

// Do performs s with c, retrying failed attempts, and returns the outcome
// of the last attempt. It returns early when ctx ends.
func Do(ctx context.Context, c *http.Client, s Spec) Outcome {
	out := Outcome{ID: s.ID}
	for attempt := 0; attempt <= s.Retries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(Backoff(attempt))
			select {
			case <-ctx.Done():
				t.Stop()
				out.Detail += " (cancelled before retry)"
				return out
			case <-t.C:
			}
		}
		o := once(ctx, c, s)
		o.Attempts = attempt + 1
		out = o
		if out.OK || ctx.Err() != nil {
			return out
		}
	}
	return out
}

func once(ctx context.Context, c *http.Client, s Spec) Outcome {
	timeout := s.timeout()
	want := s.Status
	if want == 0 {
		want = http.StatusOK
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	out := Outcome{ID: s.ID}
	finish := func(ok bool, detail string) Outcome {
		out.LatencyMicros = time.Since(start).Microseconds()
		out.OK, out.Detail = ok, detail
		return out
	}
	req, err := http.NewRequestWithContext(actx, http.MethodGet, s.URL, nil)
	if err != nil {
		return finish(false, "bad request: "+err.Error())
	}
	req.Header.Set("User-Agent", "maestro-deploy-check")
	resp, err := c.Do(req)
	if err != nil {
		return finish(false, Classify(err, actx, ctx, timeout))
	}
	defer resp.Body.Close()
	out.Status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return finish(false, "reading body: "+Classify(err, actx, ctx, timeout))
	}
	return finish(Judge(s, want, resp.StatusCode, body))
}

// Judge decides a response: status first, then body substring, then the
// JSON field. The detail names the first mismatch.
func Judge(s Spec, want, status int, body []byte) (bool, string) {
	if status != want {
		return false, fmt.Sprintf("status %d (want %d)%s", status, want, excerpt(body))
	}
	if s.Contains != "" && !strings.Contains(string(body), s.Contains) {
		return false, fmt.Sprintf("body does not contain %q%s", s.Contains, excerpt(body))
	}
	if s.JSONField != "" {
		var doc any
		if err := json.Unmarshal(body, &doc); err != nil {
			return false, fmt.Sprintf("body is not JSON (want field %s)%s", s.JSONField, excerpt(body))
		}
		v, ok := Field(doc, s.JSONField)
		if !ok {
			return false, fmt.Sprintf("json field %s missing%s", s.JSONField, excerpt(body))
		}
		if got := scalar(v); got != s.JSONEquals {
			return false, fmt.Sprintf("json field %s = %q (want %q)", s.JSONField, got, s.JSONEquals)
		}
	}
	return true, ""
}

// Field follows a dotted path ("a.b.0.c") through objects and arrays.
func Field(doc any, path string) (any, bool) {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[part]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			var i int
			if _, err := fmt.Sscanf(part, "%d", &i); err != nil || i < 0 || i >= len(v) || fmt.Sprint(i) != part {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// scalar renders a JSON value the way a catalog author writes it: strings
// bare, numbers and booleans as in JSON, objects as compact JSON.
func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "null"
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	default:
		return fmt.Sprint(x)
	}
}

// excerpt shows the start of a body after a failure: often the service
// says why it is unhappy. It is generous on purpose: the caller redacts
// secrets from the whole excerpt first and shortens it afterwards, so a
// secret is never cut in half where redaction could not see it.
func excerpt(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if s == "" {
		return ""
	}
	const n = 1024
	if len(s) > n {
		s = s[:n] + "…"
	}
	return ": " + s
}

// Classify turns a transport error into words: "timeout after 2s",
// "connection refused", "no such host x".
func Classify(err error, attemptCtx, runCtx context.Context, timeout time.Duration) string {
	var dns *net.DNSError
	var nerr net.Error
	switch {
	case runCtx.Err() != nil:
		return "cancelled: " + runCtx.Err().Error()
	case errors.Is(attemptCtx.Err(), context.DeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout():
		return "timeout after " + timeout.String()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &dns):
		return "no such host " + dns.Name
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without a response"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout after " + timeout.String()
	}
	return err.Error()
}
