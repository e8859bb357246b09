package main

// The webhook commands: clients of /admin/v1/webhooks, in the manner of
// the other admin commands. The receiver's URL is --target, since --url
// names the registry for every admin command.

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/notify"
)

// webhookSecretEnv holds the signing secrets when --secret is not given,
// which keeps them out of the shell's history and the process list.
const webhookSecretEnv = "BERTH_WEBHOOK_SECRET"

func webhookPath(name string) string { return "webhooks/" + name }

// webhook is a webhook as the API shows it: the endpoint, with the number
// of its secrets in place of the secrets, which are write-only.
type webhook struct {
	notify.Endpoint
	Secrets        int        `json:"secrets"`
	Source         string     `json:"source"`
	CreatedAt      time.Time  `json:"createdAt"`
	UpdatedAt      time.Time  `json:"updatedAt"`
	DisabledAt     *time.Time `json:"disabledAt"`
	DisabledReason string     `json:"disabledReason"`
	Failures       int64      `json:"consecutiveFailures"`
	PausedUntil    *time.Time `json:"pausedUntil"`
}

// delivery is one event to deliver to a webhook, with the log of its
// attempts when asked for alone.
type delivery struct {
	ID    int64 `json:"id"`
	Event struct {
		ID         string `json:"id"`
		Action     string `json:"action"`
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
		Digest     string `json:"digest"`
		Previous   string `json:"previous"`
		Numbered   bool   `json:"numbered"`
		Newest     bool   `json:"newest"`
		Actor      string `json:"actor"`
	} `json:"event"`
	State         string     `json:"state"`
	Attempts      int64      `json:"attempts"`
	LastStatus    int        `json:"lastStatus"`
	CreatedAt     time.Time  `json:"createdAt"`
	NextAttemptAt *time.Time `json:"nextAttemptAt"`
	DoneAt        *time.Time `json:"doneAt"`
	Log           []struct {
		Attempt  int64     `json:"attempt"`
		At       time.Time `json:"at"`
		Status   int       `json:"status"`
		Latency  string    `json:"latency"`
		Response string    `json:"response"`
	} `json:"log"`
}

// checkWebhookName accepts what the server does: 1 to 128 letters, digits,
// '-', '_' or '.'.
func checkWebhookName(name string) error {
	if name == "" || len(name) > 128 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
		return usagef("%q: a webhook name is 1 to 128 letters, digits, '-', '_' or '.'", name)
	}
	return nil
}

func checkDeliveryID(id string) error {
	if n, err := strconv.ParseInt(id, 10, 64); err != nil || n < 1 {
		return usagef("%q: a delivery id is a positive integer", id)
	}
	return nil
}

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// given drops the empty values: an empty --repo alone clears the list.
func (l listFlag) given() []string {
	return slices.DeleteFunc(slices.Clone(l), func(s string) bool { return s == "" })
}

// endpointFlags are the flags of `webhooks add` and `webhooks set`, each one
// field of the endpoint.
type endpointFlags struct {
	target, format, tagPattern          string
	numberedOnly, distributionV1        bool
	secrets                             secretList
	repos, actions, mediaTypes, headers listFlag
	file                                string
}

// endpointFlagNames are those flags, as the usage errors name them.
var endpointFlagNames = []string{"target", "format", "secret", "repo", "action", "numbered-only", "tag-pattern",
	"media-type", "header", "distribution-v1"}

func declareEndpointFlags(c *cmd) *endpointFlags {
	f := &endpointFlags{}
	c.fs.StringVar(&f.target, "target", "", "the receiver's URL, http or https, where deliveries are POSTed (--url is the registry's)")
	c.fs.StringVar(&f.format, "format", "", "the payload: cloudevents, distribution (the reference registry's) or harbor")
	c.fs.Var(&f.secrets, "secret", "signing secret, whsec_<base64> or any string; repeat it or give a comma list, newest first, to rotate (default $"+webhookSecretEnv+")")
	c.fs.Var(&f.repos, "repo", "only events of repositories matching this glob (* any run of characters, / included); repeatable")
	c.fs.Var(&f.actions, "action", "only events of this action: push, move, delete, restore, rollback, retention, manifest-delete; repeatable")
	c.fs.BoolVar(&f.numberedOnly, "numbered-only", false, "only events of numbered tags (versions)")
	c.fs.StringVar(&f.tagPattern, "tag-pattern", "", "only events of tags this regular expression matches (unanchored: write ^…$ for a whole tag)")
	c.fs.Var(&f.mediaTypes, "media-type", "only events of manifests of this media type; repeatable")
	c.fs.Var(&f.headers, "header", "add the header K=V to every delivery; repeatable")
	c.fs.BoolVar(&f.distributionV1, "distribution-v1", false, "format distribution: send the v1 media type, for receivers that only know it")
	c.fs.StringVar(&f.file, "file", "", "read the endpoint as JSON from this file (- for standard input) instead of the flags")
	return f
}

// secretsFromEnv takes the secrets from the environment when --secret is
// not given.
func (f *endpointFlags) secretsFromEnv(c *cmd) error {
	if c.set("secret") {
		return nil
	}
	v, ok := os.LookupEnv(webhookSecretEnv)
	if !ok || v == "" {
		return nil
	}
	return f.secrets.Set(v)
}

// apply sets the fields of ep whose flags were given.
func (f *endpointFlags) apply(c *cmd, ep *notify.Endpoint) error {
	if c.set("target") {
		ep.URL = f.target
	}
	if c.set("format") {
		ep.Format = f.format
	}
	if len(f.secrets) > 0 {
		ep.Secrets = f.secrets
	}
	if c.set("repo") {
		ep.Repositories = f.repos.given()
	}
	if c.set("action") {
		ep.Actions = f.actions.given()
	}
	if c.set("numbered-only") {
		ep.NumberedOnly = f.numberedOnly
	}
	if c.set("tag-pattern") {
		ep.TagPattern = f.tagPattern
	}
	if c.set("media-type") {
		ep.MediaTypes = f.mediaTypes.given()
	}
	if c.set("header") {
		ep.Headers = nil
		for _, h := range f.headers.given() {
			k, v, ok := strings.Cut(h, "=")
			if k = strings.TrimSpace(k); !ok || !notify.ValidHeader(k, v) {
				return usagef("--header %q: want NAME=VALUE, an HTTP header", h)
			}
			if ep.Headers == nil {
				ep.Headers = map[string]string{}
			}
			ep.Headers[k] = v
		}
	}
	if c.set("distribution-v1") {
		ep.DistributionMediaType = ""
		if f.distributionV1 {
			ep.DistributionMediaType = notify.DistributionMediaTypeV1
		}
	}
	return nil
}

// check reports a flag value the server would refuse, before anything is
// sent: the flags are laid over a valid endpoint, so that whatever is
// wrong is theirs.
func (f *endpointFlags) check(c *cmd) error {
	ep := notify.Endpoint{Name: "x", URL: "http://x", Format: notify.FormatCloudEvents, Secrets: []string{"x"}}
	if f.distributionV1 {
		ep.Format = notify.FormatDistribution
	}
	if err := f.apply(c, &ep); err != nil {
		return err
	}
	return validEndpoint(c, ep)
}

// validEndpoint checks an endpoint as the server will; an endpoint without
// secrets stands for one whose stored secrets stay.
func validEndpoint(c *cmd, ep notify.Endpoint) error {
	if len(ep.Secrets) == 0 {
		ep.Secrets = []string{"stored"}
	}
	if err := ep.Validate(); err != nil {
		msg := strings.TrimPrefix(err.Error(), "webhook endpoint "+ep.Name+": ")
		return usagef("%s (berth %s --help lists the flags)", msg, c.name)
	}
	return nil
}

// given lists the endpoint flags on the command line.
func (f *endpointFlags) given(c *cmd) []string {
	var given []string
	for _, n := range endpointFlagNames {
		if c.set(n) {
			given = append(given, "--"+n)
		}
	}
	return given
}

// readEndpointFile reads an endpoint document for the webhook name: the
// name it gives, if any, must be that one.
func readEndpointFile(file, name string) (map[string]json.RawMessage, error) {
	b, err := readPolicyFile(file)
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, usagef("--file %s: not a JSON object", file)
	}
	if n, ok := doc["name"]; ok {
		var s string
		if json.Unmarshal(n, &s) != nil || s != name {
			return nil, usagef("--file %s names the webhook %s, not %s", file, n, name)
		}
	}
	doc["name"], _ = json.Marshal(name)
	return doc, nil
}

func webhooksList(c *cmd, args []string) error {
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	var ws struct {
		Webhooks []webhook `json:"webhooks"`
	}
	if err := c.call(http.MethodGet, "webhooks", nil, &ws); err != nil || c.json {
		return err
	}
	return renderWebhooks(c.out, ws.Webhooks)
}

// webhookState says whether a webhook delivers: enabled, disabled, or
// paused after consecutive failures.
func webhookState(w webhook) string {
	switch {
	case w.DisabledAt != nil:
		return "disabled"
	case w.PausedUntil != nil:
		return "paused until " + when(w.PausedUntil)
	}
	return "enabled"
}

func renderWebhooks(w io.Writer, ws []webhook) error {
	rows := make([][]string, len(ws))
	for i, h := range ws {
		rows[i] = []string{h.Name, h.URL, h.Format, h.Source, webhookState(h), strconv.FormatInt(h.Failures, 10)}
	}
	return table(w, []string{"NAME", "TARGET", "FORMAT", "SOURCE", "STATE", "FAILURES"}, rows)
}

func webhooksShow(c *cmd, args []string) error {
	arg, err := c.one(args, checkWebhookName)
	if err != nil {
		return err
	}
	var h webhook
	if err := c.call(http.MethodGet, webhookPath(arg), nil, &h); err != nil || c.json {
		return err
	}
	return renderWebhook(c.out, h)
}

// renderWebhook prints a webhook under the flag names that set it, then
// its state.
func renderWebhook(w io.Writer, h webhook) error {
	list := func(l []string) string { return orDash(strings.Join(l, ", ")) }
	var headers []string
	for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
		headers = append(headers, k+"="+h.Headers[k])
	}
	state := webhookState(h)
	if h.DisabledAt != nil {
		state = "disabled at " + when(h.DisabledAt)
		if h.DisabledReason != "" {
			state += ": " + h.DisabledReason
		}
	}
	format := h.Format
	if h.DistributionMediaType != "" {
		format += " (" + h.DistributionMediaType + ")"
	}
	return table(w, []string{"WEBHOOK", h.Name}, [][]string{
		{"target", h.URL},
		{"format", format},
		{"secrets", strconv.Itoa(h.Secrets)},
		{"repo", list(h.Repositories)},
		{"action", list(h.Actions)},
		{"numbered-only", strconv.FormatBool(h.NumberedOnly)},
		{"tag-pattern", orDash(h.TagPattern)},
		{"media-type", list(h.MediaTypes)},
		{"header", list(headers)},
		{"source", h.Source},
		{"state", state},
		{"failures", strconv.FormatInt(h.Failures, 10)},
		{"created", when(&h.CreatedAt)},
		{"updated", when(&h.UpdatedAt)},
	})
}

func webhooksAdd(c *cmd, args []string) error {
	f := declareEndpointFlags(c)
	arg, err := c.one(args, checkWebhookName)
	if err != nil {
		return err
	}
	var body any
	if c.set("file") {
		if given := f.given(c); len(given) > 0 {
			return usagef("--file and %s: give the endpoint one way", strings.Join(given, ", "))
		}
		if body, err = readEndpointFile(f.file, arg); err != nil {
			return err
		}
	} else {
		switch {
		case !c.set("target"):
			return usagef("webhooks add needs --target URL, the receiver's (--url is the registry's)")
		case !c.set("format"):
			return usagef("webhooks add needs --format cloudevents, distribution or harbor")
		}
		if err := f.secretsFromEnv(c); err != nil {
			return err
		}
		if len(f.secrets) == 0 {
			return usagef("webhooks add needs --secret (or $%s): every delivery is signed", webhookSecretEnv)
		}
		ep := notify.Endpoint{Name: arg}
		if err := f.apply(c, &ep); err != nil {
			return err
		}
		if err := validEndpoint(c, ep); err != nil {
			return err
		}
		body = ep
	}
	var h webhook
	if err := c.call(http.MethodPost, "webhooks", body, &h); err != nil || c.json {
		return err
	}
	return renderWebhook(c.out, h)
}

// webhooksSet changes a webhook: the flags given replace their fields and
// the others stay (the secrets too, without --secret), or --file replaces
// the whole endpoint.
func webhooksSet(c *cmd, args []string) error {
	f := declareEndpointFlags(c)
	pos, err := c.parse(args, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if err := checkWebhookName(name); err != nil {
		return err
	}
	given := f.given(c)
	var body any
	switch {
	case c.set("file") && len(given) > 0:
		return usagef("--file and %s: give the endpoint one way", strings.Join(given, ", "))
	case c.set("file"):
		if body, err = readEndpointFile(f.file, name); err != nil {
			return err
		}
	default:
		if err := f.secretsFromEnv(c); err != nil {
			return err
		}
		if len(given) == 0 && len(f.secrets) == 0 {
			return usagef("webhooks set: give at least one of --%s, or --file", strings.Join(endpointFlagNames, ", --"))
		}
		if err := f.check(c); err != nil {
			return err
		}
		b, err := c.do(http.MethodGet, webhookPath(name), nil, nil)
		if err != nil {
			return err
		}
		var cur webhook
		if err := json.Unmarshal(b, &cur); err != nil {
			return fmt.Errorf("GET %s: %w", webhookPath(name), err)
		}
		ep := cur.Endpoint
		ep.Name, ep.Secrets = name, nil
		if err := f.apply(c, &ep); err != nil {
			return err
		}
		if err := validEndpoint(c, ep); err != nil {
			return err
		}
		body = ep
	}
	var h webhook
	if err := c.call(http.MethodPut, webhookPath(name), body, &h); err != nil || c.json {
		return err
	}
	return renderWebhook(c.out, h)
}

func webhooksDelete(c *cmd, args []string) error {
	arg, err := c.one(args, checkWebhookName)
	if err != nil {
		return err
	}
	if err := c.call(http.MethodDelete, webhookPath(arg), nil, nil); err != nil || c.json {
		return err
	}
	_, err = fmt.Fprintf(c.out, "deleted the webhook %s and its deliveries\n", arg)
	return err
}

func webhooksEnable(c *cmd, args []string) error {
	arg, err := c.one(args, checkWebhookName)
	if err != nil {
		return err
	}
	var h webhook
	if err := c.call(http.MethodPost, webhookPath(arg)+"/enable", nil, &h); err != nil || c.json {
		return err
	}
	_, err = fmt.Fprintf(c.out, "enabled the webhook %s\n", h.Name)
	return err
}

func webhooksDeliveries(c *cmd, args []string) error {
	c.paged()
	arg, err := c.one(args, checkWebhookName)
	if err != nil {
		return err
	}
	var ds []delivery
	if err := c.list(webhookPath(arg)+"/deliveries", nil, "deliveries", &ds); err != nil || c.json {
		return err
	}
	return renderDeliveries(c.out, ds)
}

// reference is what an event is about: repo:tag, or repo@digest for a
// manifest deleted by digest.
func (d delivery) reference() string {
	if d.Event.Tag == "" {
		return d.Event.Repository + "@" + short(d.Event.Digest)
	}
	return d.Event.Repository + ":" + d.Event.Tag
}

// status is the last attempt's HTTP status, or - for none.
func (d delivery) status() string {
	if d.LastStatus == 0 {
		return "-"
	}
	return strconv.Itoa(d.LastStatus)
}

func renderDeliveries(w io.Writer, ds []delivery) error {
	rows := make([][]string, len(ds))
	for i, d := range ds {
		rows[i] = []string{strconv.FormatInt(d.ID, 10), when(&d.CreatedAt), d.Event.Action, d.reference(), d.State,
			strconv.FormatInt(d.Attempts, 10), d.status(), when(d.NextAttemptAt)}
	}
	return table(w, []string{"ID", "CREATED", "ACTION", "REFERENCE", "STATE", "ATTEMPTS", "STATUS", "NEXT ATTEMPT"}, rows)
}

// deliveryArgs reads NAME ID.
func deliveryArgs(c *cmd, args []string) (string, error) {
	pos, err := c.parse(args, 2)
	if err != nil {
		return "", err
	}
	if err := checkWebhookName(pos[0]); err != nil {
		return "", err
	}
	if err := checkDeliveryID(pos[1]); err != nil {
		return "", err
	}
	return webhookPath(pos[0]) + "/deliveries/" + pos[1], nil
}

func webhooksDelivery(c *cmd, args []string) error {
	path, err := deliveryArgs(c, args)
	if err != nil {
		return err
	}
	var d delivery
	if err := c.call(http.MethodGet, path, nil, &d); err != nil || c.json {
		return err
	}
	return renderDelivery(c.out, d)
}

// renderDelivery prints a delivery, then the log of its attempts.
func renderDelivery(w io.Writer, d delivery) error {
	e := d.Event
	numbered := "no"
	if e.Numbered {
		numbered = "yes"
		if e.Newest {
			numbered = "yes, the newest"
		}
	}
	err := table(w, []string{"DELIVERY", strconv.FormatInt(d.ID, 10)}, [][]string{
		{"event", e.ID},
		{"action", e.Action},
		{"reference", d.reference()},
		{"digest", e.Digest},
		{"previous", orDash(e.Previous)},
		{"numbered", numbered},
		{"actor", orDash(e.Actor)},
		{"created", when(&d.CreatedAt)},
		{"state", d.State},
		{"attempts", strconv.FormatInt(d.Attempts, 10)},
		{"next attempt", when(d.NextAttemptAt)},
		{"done", when(d.DoneAt)},
	})
	if err != nil || len(d.Log) == 0 {
		return err
	}
	fmt.Fprintln(w)
	rows := make([][]string, len(d.Log))
	for i, a := range d.Log {
		status := "-"
		if a.Status != 0 {
			status = strconv.Itoa(a.Status)
		}
		rows[i] = []string{strconv.FormatInt(a.Attempt, 10), when(&a.At), status, latency(a.Latency), oneLine(a.Response, 72)}
	}
	return table(w, []string{"ATTEMPT", "AT", "STATUS", "LATENCY", "RESPONSE"}, rows)
}

// latency rounds a duration the API gives to what a person reads.
func latency(s string) string {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return orDash(s)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// oneLine squeezes a receiver's answer onto one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return orDash(s)
}

func webhooksRedeliver(c *cmd, args []string) error {
	path, err := deliveryArgs(c, args)
	if err != nil {
		return err
	}
	var d delivery
	if err := c.call(http.MethodPost, path+"/redeliver", nil, &d); err != nil || c.json {
		return err
	}
	_, err = fmt.Fprintf(c.out, "delivery %d (%s %s) is %s again, due now\n", d.ID, d.Event.Action, d.reference(), d.State)
	return err
}

// pingAnswer is what the receiver made of a test delivery.
type pingAnswer struct {
	Event    string `json:"event"`
	Status   int    `json:"status"`
	Response string `json:"response"`
	Error    string `json:"error"`
}

// webhooksPing sends a test delivery and fails unless the receiver
// answers it with a 2xx.
func webhooksPing(c *cmd, args []string) error {
	arg, err := c.one(args, checkWebhookName)
	if err != nil {
		return err
	}
	b, err := c.do(http.MethodPost, webhookPath(arg)+"/ping", nil, nil)
	if err != nil {
		return err
	}
	var p pingAnswer
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("POST %s/ping: %w", webhookPath(arg), err)
	}
	if c.json {
		if err := c.printJSON(b); err != nil {
			return err
		}
	} else {
		status := "no answer"
		if p.Status != 0 {
			status = strconv.Itoa(p.Status) + " " + http.StatusText(p.Status)
		}
		fmt.Fprintf(c.out, "ping %s (event %s): %s\n", arg, p.Event, strings.TrimSpace(status))
		if p.Response != "" {
			fmt.Fprintf(c.out, "response: %s\n", oneLine(p.Response, 200))
		}
	}
	switch {
	case p.Error != "":
		return fmt.Errorf("ping %s: %s", arg, p.Error)
	case p.Status < 200 || p.Status > 299:
		return fmt.Errorf("ping %s: the receiver answered %d", arg, p.Status)
	}
	return nil
}
