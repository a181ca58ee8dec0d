package check

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/maestro-platform/deploy/internal/atomicfile"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Print writes the results as a table (service, check, kind, result,
// latency, detail) and a summary line.
func (r *Report) Print(p *ui.Printer) {
	rows := make([][]string, 0, len(r.Results))
	for _, res := range r.Results {
		mark := p.Colorize(ui.OK, "PASS")
		if !res.OK {
			mark = p.Colorize(ui.Fail, "FAIL")
		}
		detail := res.Detail
		if res.OK && res.Status != 0 {
			detail = fmt.Sprintf("HTTP %d", res.Status)
		}
		if res.Attempts > 1 {
			detail += fmt.Sprintf(" (%d attempts)", res.Attempts)
		}
		rows = append(rows, []string{res.Service, res.Check, res.Kind, mark, latency(res.Latency), detail})
	}
	p.Table([]string{"SERVICE", "CHECK", "KIND", "RESULT", "LATENCY", "DETAIL"}, rows)
	total := len(r.Results)
	if r.Failed == 0 {
		p.Line(ui.OK, "", "all %d checks passed in %s", total, ui.Seconds(r.Duration))
		return
	}
	p.Line(ui.Fail, "", "%d of %d checks failed, %d passed, in %s", r.Failed, total, r.Passed, ui.Seconds(r.Duration))
}

func latency(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	return ui.Seconds(d)
}

// SchemaVersion is the "schema" field of the JSON report.
const SchemaVersion = 1

// WriteJSON writes the report as JSON (reports/testall.json), schema 1:
//
//	{
//	  "schema": 1,                         // bumped on an incompatible change
//	  "project": "maestro",                // compose project or swarm stack name
//	  "environment": "dev",                // catalog environment the stack runs in
//	  "started": "2026-05-01T10:00:00Z",   // RFC 3339, UTC: when the run began
//	  "duration_ms": 412,                  // wall time of the whole run, integer ms
//	  "ok": false,                         // true when every check passed
//	  "total": 12, "passed": 11, "failed": 1,
//	  "results": [                         // catalog order: per service, container
//	    {                                  // check, implicit health, declared checks
//	      "service": "maestro-gateway",    // catalog service name
//	      "check": "gateway -> template-service",  // check name, unique per service
//	      "kind": "network",               // "container" | "http" | "network"
//	      "ok": false,
//	      "status": 502,                   // HTTP status of the last attempt; 0 = no
//	                                       // response, or a container check
//	      "latency_ms": 3.2,               // duration of the last attempt, ms (float)
//	      "attempts": 3,                   // 1 + retries used
//	      "detail": "status 502 (want 200): {...}"  // why it failed; for a container its
//	    }                                  // state ("healthy"); may be "" when passed
//	  ]
//	}
//
// Secret values of the catalog never appear in it: they are replaced by "***".
func (r *Report) WriteJSON(w io.Writer) error {
	type result struct {
		Service   string  `json:"service"`
		Check     string  `json:"check"`
		Kind      string  `json:"kind"`
		OK        bool    `json:"ok"`
		Status    int     `json:"status"`
		LatencyMS float64 `json:"latency_ms"`
		Attempts  int     `json:"attempts"`
		Detail    string  `json:"detail"`
	}
	doc := struct {
		Schema      int       `json:"schema"`
		Project     string    `json:"project"`
		Environment string    `json:"environment"`
		Started     time.Time `json:"started"`
		DurationMS  int64     `json:"duration_ms"`
		OK          bool      `json:"ok"`
		Total       int       `json:"total"`
		Passed      int       `json:"passed"`
		Failed      int       `json:"failed"`
		Results     []result  `json:"results"`
	}{SchemaVersion, r.Project, r.Environment, r.Started.UTC().Truncate(time.Millisecond),
		r.Duration.Milliseconds(), r.Failed == 0, len(r.Results), r.Passed, r.Failed, []result{}}
	for _, res := range r.Results {
		doc.Results = append(doc.Results, result{res.Service, res.Check, res.Kind, res.OK, res.Status,
			float64(res.Latency.Microseconds()) / 1000, res.Attempts, res.Detail})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// JUnit XML, the shape CI servers read: one testsuite per service, one
// testcase per check.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes the report as JUnit XML (reports/testall.xml): a
// testsuite per service named after it, a testcase per check with
// classname "<project>.<service>", and a failure element carrying the
// detail for each failed check.
func (r *Report) WriteJUnit(w io.Writer) error {
	doc := junitSuites{Name: "testAll " + r.Project + " (" + r.Environment + ")",
		Tests: len(r.Results), Failures: r.Failed, Time: secs(r.Duration)}
	index := map[string]int{}
	for _, res := range r.Results {
		i, ok := index[res.Service]
		if !ok {
			i = len(doc.Suites)
			index[res.Service] = i
			doc.Suites = append(doc.Suites, junitSuite{Name: res.Service,
				Timestamp: r.Started.UTC().Format("2006-01-02T15:04:05")})
		}
		s := &doc.Suites[i]
		c := junitCase{Name: res.Check, Classname: r.Project + "." + res.Service, Time: secs(res.Latency)}
		if res.OK {
			c.SystemOut = res.Detail
		} else {
			c.Failure = &junitFailure{Message: res.Detail, Type: res.Kind, Text: res.Detail}
			s.Failures++
		}
		s.Tests++
		s.Cases = append(s.Cases, c)
	}
	// A suite's time is its slowest check: they ran at the same time.
	for i := range doc.Suites {
		var slowest time.Duration
		for _, res := range r.Results {
			if res.Service == doc.Suites[i].Name && res.Latency > slowest {
				slowest = res.Latency
			}
		}
		doc.Suites[i].Time = secs(slowest)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteReports writes <dir>/reports/testall.xml and testall.json (0644),
// each through a temporary file renamed into place, so a reader never sees
// half a report.
func WriteReports(dir string, r *Report) error {
	out := filepath.Join(dir, "reports")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"testall.xml", r.WriteJUnit}, {"testall.json", r.WriteJSON}} {
		if err := atomicfile.WriteFunc(filepath.Join(out, f.name), 0o644, f.write); err != nil {
			return fmt.Errorf("reports: %w", err)
		}
	}
	return nil
}
