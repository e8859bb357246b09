package main

// The admin commands are thin clients of a running registry's admin API
// (/admin/v1). This file holds what they share: the command line, the
// requests, the pages of a listing, the errors and the output helpers.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// maxPage is the largest page the admin API serves.
const maxPage = 1000

// usageError is a mistake on the command line: berth exits with status 2.
type usageError struct {
	msg   string
	shown bool // the flag package has already printed the error and the usage
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

// apiError is the OCI error envelope of a refused request.
type apiError struct {
	Errors []struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail,omitempty"`
	} `json:"errors"`
}

// Error reads CODE: message, with the detail as compact JSON when there is
// one (a lost compare-and-swap names the tag's current digest there); main
// prints each of several errors on a line of its own after "berth: ".
func (e *apiError) Error() string {
	var lines []string
	for _, x := range e.Errors {
		s := x.Code + ": " + x.Message
		var b bytes.Buffer
		if len(x.Detail) > 0 && string(x.Detail) != "null" && json.Compact(&b, x.Detail) == nil {
			s += " " + b.String()
		}
		lines = append(lines, s)
	}
	return strings.Join(lines, "\nberth: ")
}

// cmd is one admin command being run: its flags, the client they configure
// and where its output goes.
type cmd struct {
	name, args string // "tags set", "REPO:TAG DIGEST"
	fs         *flag.FlagSet
	out        io.Writer

	base           *url.URL
	rawURL         string
	user, password string
	json           bool
	limit          int
	http           *http.Client
}

// newCmd declares the flags every admin command has.
func newCmd(name, args, about string, out, errOut io.Writer) *cmd {
	c := &cmd{name: name, args: args, out: out, fs: flag.NewFlagSet("berth "+name, flag.ContinueOnError)}
	c.fs.SetOutput(errOut)
	c.fs.Usage = func() {
		fmt.Fprintf(errOut, "Usage: berth %s [flags]\n\n%s.\n\nFlags:\n", strings.TrimSpace(name+" "+args), about)
		c.fs.PrintDefaults()
	}
	def := os.Getenv("BERTH_URL")
	if def == "" {
		def = "http://localhost:5000"
	}
	c.fs.StringVar(&c.rawURL, "url", def, "URL of the registry ($BERTH_URL)")
	// The environment is read after parsing, so that --help never prints a password.
	c.fs.StringVar(&c.user, "user", "", "user name for HTTP basic authentication (default $BERTH_USER)")
	c.fs.StringVar(&c.password, "password", "", "password for HTTP basic authentication (default $BERTH_PASSWORD)")
	c.fs.BoolVar(&c.json, "json", false, "print the server's JSON, for scripts")
	// Generous, yet a script never hangs on a stuck server; retention of a big repository takes a while.
	c.http = &http.Client{Timeout: 5 * time.Minute}
	return c
}

// paged adds --limit to a listing.
func (c *cmd) paged() {
	c.fs.IntVar(&c.limit, "limit", 0, "print at most this many rows (default all, every page)")
}

// one parses a command of one argument, which check must accept.
func (c *cmd) one(args []string, check func(string) error) (string, error) {
	pos, err := c.parse(args, 1)
	if err != nil {
		return "", err
	}
	return pos[0], check(pos[0])
}

// optional parses a command of at most one argument, which check must
// accept when it is there; "" when it is not.
func (c *cmd) optional(args []string, check func(string) error) (string, error) {
	pos, err := c.parseBetween(args, 0, 1)
	if err != nil || len(pos) == 0 {
		return "", err
	}
	return pos[0], check(pos[0])
}

// parse reads the flags wherever they stand among the arguments, so that
// `berth rollback app --to 41` works, and returns exactly n positional ones.
func (c *cmd) parse(args []string, n int) ([]string, error) { return c.parseBetween(args, n, n) }

// parseBetween is parse for commands of lo to hi positional arguments.
func (c *cmd) parseBetween(args []string, lo, hi int) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{msg: err.Error(), shown: true}
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...) // after --, everything is an argument
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) < lo || len(pos) > hi {
		return nil, usagef("usage: berth %s [flags] (berth %s --help lists them)", strings.TrimSpace(c.name+" "+c.args), c.name)
	}
	if !c.set("user") {
		c.user = os.Getenv("BERTH_USER")
	}
	if !c.set("password") {
		c.password = os.Getenv("BERTH_PASSWORD")
	}
	u, err := url.Parse(c.rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--url %q: want http://host[:port] or https://…", c.rawURL)
	}
	c.base = u
	if c.limit < 0 {
		return nil, usagef("--limit must not be negative")
	}
	return pos, nil
}

// set reports whether a flag was given on the command line.
func (c *cmd) set(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// do sends one request to the admin API and returns the response body. path
// is unescaped, below /admin/v1/: url.URL escapes what a path segment needs
// and keeps the slashes of repository names as separators.
func (c *cmd) do(method, path string, q url.Values, body []byte) ([]byte, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/admin/v1/" + path
	u.RawPath = ""
	u.RawQuery = q.Encode()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u.String(), r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" || c.password != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	if resp.StatusCode >= 300 {
		var e apiError
		if json.Unmarshal(b, &e) == nil && len(e.Errors) > 0 {
			return nil, &e
		}
		// Not Berth answering: a proxy, or a registry without the admin API.
		return nil, fmt.Errorf("%s %s: %s: %.200s", method, u.Path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// call sends a request with a JSON body (nil for none). With --json it
// prints the response; otherwise it decodes the response into into.
func (c *cmd) call(method, path string, body, into any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	resp, err := c.do(method, path, nil, b)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp)
	}
	if into == nil || len(resp) == 0 {
		return nil
	}
	return json.Unmarshal(resp, into)
}

// list fetches a listing page by page, following the next cursors until the
// end or --limit rows, and decodes the rows under key into rows. Each page
// asks for no more rows than --limit still wants, so that the last page's
// next is where the rows stop. With --json it prints one page as it came,
// or the first of several with the rows of all under key and the last next.
func (c *cmd) list(path string, q url.Values, key string, rows any) error {
	if q == nil {
		q = url.Values{}
	}
	var first []byte
	var doc map[string]json.RawMessage
	var all []json.RawMessage
	pages, cut, cursor := 0, false, ""
	for {
		n := maxPage
		if c.limit > 0 {
			n = min(n, c.limit-len(all))
		}
		q.Set("limit", strconv.Itoa(n))
		b, err := c.do(http.MethodGet, path, q, nil)
		if err != nil {
			return err
		}
		pages++
		var page map[string]json.RawMessage
		var items []json.RawMessage
		var next string
		if err := json.Unmarshal(b, &page); err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		if err := json.Unmarshal(page[key], &items); err != nil && page[key] != nil {
			return fmt.Errorf("GET %s: %q: %w", path, key, err)
		}
		if err := json.Unmarshal(page["next"], &next); err != nil && page["next"] != nil {
			return fmt.Errorf("GET %s: next: %w", path, err)
		}
		if first == nil {
			first, doc = b, page
		}
		if next != "" {
			doc["next"] = page["next"]
		} else {
			delete(doc, "next")
		}
		all = append(all, items...)
		if c.limit > 0 && len(all) >= c.limit {
			all, cut = all[:c.limit], len(all) > c.limit // cut only if the server sent more than asked
			break
		}
		if next == "" {
			break
		}
		if next == cursor {
			return fmt.Errorf("GET %s: the server repeated the cursor %q", path, next)
		}
		cursor = next
		q.Set("cursor", cursor)
	}
	if c.json && pages == 1 && !cut {
		return c.printJSON(first)
	}
	if all == nil {
		all = []json.RawMessage{}
	}
	merged, err := json.Marshal(all)
	if err != nil {
		return err
	}
	if !c.json {
		return json.Unmarshal(merged, rows)
	}
	doc[key] = merged
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return c.printJSON(b)
}

// printJSON prints a response indented, as it came.
func (c *cmd) printJSON(b []byte) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("the server's response is not JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err := c.out.Write(out.Bytes())
	return err
}

// table prints rows under a header, in aligned columns, without the
// padding tabwriter leaves before an empty last cell.
func table(w io.Writer, header []string, rows [][]string) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
	for line := range strings.Lines(b.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// when prints a time in UTC to the second, or - for none.
func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// short abbreviates a digest to 12 hex digits, as docker does; digests of
// other algorithms keep their name.
func short(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok {
		return orDash(d)
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	if alg == "sha256" {
		return hex
	}
	return alg + ":" + hex
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// size prints a byte count in binary units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
