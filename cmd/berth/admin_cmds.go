package main

// The admin commands: one function each, declaring its flags, checking its
// arguments before anything is sent, and printing the answer as a table
// (or as the server's JSON with --json).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/oci"
)

// adminCommand is one admin command: the words that name it, its arguments
// and what it does, for the usage text.
type adminCommand struct {
	name, args, about string
	run               func(c *cmd, args []string) error
}

// adminCommands is every admin command, in the order the usage lists them.
var adminCommands = []adminCommand{
	{"repos", "", "list the repositories", reposList},
	{"repos show", "REPO", "a repository: tags, manifests, size, newest version", reposShow},
	{"versions", "REPO", "the numbered tags, newest first", versionsCmd},
	{"tags list", "REPO [--state S] [--filter GLOB]", "the live, deleted or all tags", tagsList},
	{"tags history", "REPO:TAG", "where a tag has pointed, newest first", tagsHistory},
	{"tags set", "REPO:TAG DIGEST [--expect D]", "point a tag at a manifest, if it points at D now", tagsSet},
	{"tags delete", "REPO:TAG", "delete a tag, restorable for a while", tagsDelete},
	{"tags restore", "REPO:TAG", "bring back a recently deleted tag", tagsRestore},
	{"rollback", "REPO --to TAG|DIGEST", "go back to an earlier image (--mode promote|retarget)", rollbackCmd},
	{"policy get", "REPO", "the effective policy and the rules it comes from", policyGet},
	{"policy set", "REPO|GLOB FLAGS|--file F", "set a rule; the fields not given inherit", policySet},
	{"policy delete", "REPO|GLOB", "delete a rule", policyDelete},
	{"policy list", "", "list every rule", policyList},
	{"retention", "REPO [--dry-run]", "delete the numbered tags no retention rule keeps", retentionCmd},
	{"gc", "[--dry-run] [--list]", "collect garbage now, or list what a run would delete", gcCmd},
	{"stats", "[REPO]", "storage figures: bytes stored, bytes referenced, what deduplication saves", statsCmd},
	{"webhooks list", "", "list the webhooks and whether they deliver", webhooksList},
	{"webhooks show", "NAME", "a webhook: its receiver, format, filters and state", webhooksShow},
	{"webhooks add", "NAME --target URL --format F [FLAGS]", "add a webhook: receiver, format, secret, filters", webhooksAdd},
	{"webhooks set", "NAME FLAGS|--file F", "change a webhook; the fields not given stay", webhooksSet},
	{"webhooks delete", "NAME", "delete a webhook and its deliveries", webhooksDelete},
	{"webhooks enable", "NAME", "enable a disabled or paused webhook again", webhooksEnable},
	{"webhooks deliveries", "NAME", "a webhook's deliveries, newest first", webhooksDeliveries},
	{"webhooks delivery", "NAME ID", "a delivery with the log of its attempts", webhooksDelivery},
	{"webhooks redeliver", "NAME ID", "deliver an event again, whatever became of it", webhooksRedeliver},
	{"webhooks ping", "NAME", "send a signed test event now and show the answer", webhooksPing},
}

// findAdmin picks the command the first words of args name, two-word names
// first, and returns the arguments after them. A group word alone ("tags")
// is a usage error that lists its commands.
func findAdmin(args []string) (*adminCommand, []string, error) {
	for _, n := range []int{2, 1} {
		if len(args) < n {
			continue
		}
		name := strings.Join(args[:n], " ")
		for i := range adminCommands {
			if adminCommands[i].name == name {
				return &adminCommands[i], args[n:], nil
			}
		}
	}
	var group []string
	for _, a := range adminCommands {
		if g, sub, ok := strings.Cut(a.name, " "); ok && len(args) > 0 && g == args[0] {
			group = append(group, sub)
		}
	}
	if len(group) > 0 {
		return nil, nil, usagef("berth %s takes a command: %s", args[0], strings.Join(group, ", "))
	}
	return nil, nil, nil
}

// runAdmin runs the admin command args name; ok is false if they name none.
func runAdmin(args []string, out, errOut io.Writer) (ok bool, err error) {
	a, rest, err := findAdmin(args)
	if err != nil || a == nil {
		return err != nil, err
	}
	return true, a.run(newCmd(a.name, a.args, a.about, out, errOut), rest)
}

// splitRef reads REPO:TAG. The tag follows the last ':' after the last '/',
// so a registry's port (host:5000/app) is never taken for a tag.
func splitRef(ref string) (repo, tag string, err error) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || i < strings.LastIndex(ref, "/") {
		return "", "", usagef("%q: want REPO:TAG", ref)
	}
	repo, tag = ref[:i], ref[i+1:]
	if err := checkName(repo); err != nil {
		return "", "", err
	}
	if oci.ValidateTag(tag) != nil {
		return "", "", usagef("%q: invalid tag", tag)
	}
	return repo, tag, nil
}

func checkName(repo string) error {
	if oci.ValidateName(repo) != nil {
		return usagef("%q: invalid repository name", repo)
	}
	return nil
}

// checkPolicyName accepts a repository name or a glob of them, whose '*'
// matches any run of characters: with each '*' read as a letter, it must
// be a name.
func checkPolicyName(name string) error {
	if oci.ValidateName(strings.NewReplacer("*", "x", "?", "x").Replace(name)) != nil {
		return usagef("%q: invalid repository name or glob", name)
	}
	return nil
}

func checkDigest(d string) error {
	if _, err := oci.ParseDigest(d); err != nil {
		return usagef("%q: invalid digest: %v", d, err)
	}
	return nil
}

// Paths below /admin/v1/.
func repoPath(repo string) string     { return "repositories/" + repo }
func tagPath(repo, tag string) string { return repoPath(repo) + "/tags/" + tag }

// The admin API's documents, as far as the tables show them.
type (
	event struct {
		ID        int64      `json:"id"`
		Tag       string     `json:"tag"`
		Digest    string     `json:"digest"`
		Start     time.Time  `json:"start"`
		End       *time.Time `json:"end"`
		Actor     string     `json:"actor"`
		Action    string     `json:"action"`
		EndedBy   string     `json:"endedBy"`
		EndAction string     `json:"endAction"`
	}
	version struct {
		Tag      string    `json:"tag"`
		Digest   string    `json:"digest"`
		PushedAt time.Time `json:"pushedAt"`
		Newest   bool      `json:"newest"`
	}
	tagInfo struct {
		Tag             string     `json:"tag"`
		Digest          string     `json:"digest"`
		Start           time.Time  `json:"start"`
		End             *time.Time `json:"end"`
		Numbered        bool       `json:"numbered"`
		Rank            int        `json:"rank"`
		RestorableUntil *time.Time `json:"restorableUntil"`
	}
	repository struct {
		Name         string    `json:"name"`
		CreatedAt    time.Time `json:"createdAt"`
		Tags         count     `json:"tags"`
		NumberedTags count     `json:"numberedTags"`
		Manifests    int64     `json:"manifests"`
		Size         int64     `json:"size"`
		Newest       *struct {
			Tag      string    `json:"tag"`
			Digest   string    `json:"digest"`
			PushedAt time.Time `json:"pushedAt"`
		} `json:"newest"`
	}
	// tagResult answers a change to one tag.
	tagResult struct {
		Repository string `json:"repository"`
		Mode       string `json:"mode"`
		Tag        string `json:"tag"`
		Digest     string `json:"digest"`
		Previous   string `json:"previous"`
	}
)

// count is a number of tags, which the API may give as the number or as
// the list of them.
type count int

func (n *count) UnmarshalJSON(b []byte) error {
	var list []json.RawMessage
	if json.Unmarshal(b, &list) == nil {
		*n = count(len(list))
		return nil
	}
	return json.Unmarshal(b, (*int)(n))
}

func reposList(c *cmd, args []string) error {
	c.paged()
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	var rs []repository
	if err := c.list("repositories", nil, "repositories", &rs); err != nil || c.json {
		return err
	}
	return renderRepos(c.out, rs)
}

func renderRepos(w io.Writer, rs []repository) error {
	rows := make([][]string, len(rs))
	for i, r := range rs {
		newest := "-"
		if r.Newest != nil {
			newest = r.Newest.Tag
		}
		rows[i] = []string{r.Name, strconv.Itoa(int(r.Tags)), strconv.Itoa(int(r.NumberedTags)),
			strconv.FormatInt(r.Manifests, 10), size(r.Size), newest, when(&r.CreatedAt)}
	}
	return table(w, []string{"NAME", "TAGS", "NUMBERED", "MANIFESTS", "SIZE", "NEWEST", "CREATED"}, rows)
}

func reposShow(c *cmd, args []string) error {
	arg, err := c.one(args, checkName)
	if err != nil {
		return err
	}
	var r repository
	if err := c.call(http.MethodGet, repoPath(arg), nil, &r); err != nil || c.json {
		return err
	}
	return renderRepo(c.out, r)
}

func renderRepo(w io.Writer, r repository) error {
	newest := "-"
	if r.Newest != nil {
		newest = fmt.Sprintf("%s  %s  %s", r.Newest.Tag, r.Newest.Digest, when(&r.Newest.PushedAt))
	}
	return table(w, []string{"NAME", r.Name}, [][]string{
		{"CREATED", when(&r.CreatedAt)},
		{"TAGS", strconv.Itoa(int(r.Tags))},
		{"NUMBERED TAGS", strconv.Itoa(int(r.NumberedTags))},
		{"MANIFESTS", strconv.FormatInt(r.Manifests, 10)},
		{"SIZE", fmt.Sprintf("%s (%d bytes)", size(r.Size), r.Size)},
		{"NEWEST", newest},
	})
}

func versionsCmd(c *cmd, args []string) error {
	c.paged()
	arg, err := c.one(args, checkName)
	if err != nil {
		return err
	}
	var vs []version
	if err := c.list(repoPath(arg)+"/versions", nil, "versions", &vs); err != nil || c.json {
		return err
	}
	return renderVersions(c.out, vs)
}

func renderVersions(w io.Writer, vs []version) error {
	rows := make([][]string, len(vs))
	for i, v := range vs {
		newest := ""
		if v.Newest {
			newest = "newest"
		}
		rows[i] = []string{v.Tag, short(v.Digest), when(&v.PushedAt), newest}
	}
	return table(w, []string{"TAG", "DIGEST", "PUSHED", ""}, rows)
}

func tagsList(c *cmd, args []string) error {
	c.paged()
	state := c.fs.String("state", "live", "which tags: live, deleted (recently, restorable) or all")
	filter := c.fs.String("filter", "", "only tags matching this glob: * any run of characters, ? one character")
	arg, err := c.one(args, checkName)
	if err != nil {
		return err
	}
	switch *state {
	case "live", "deleted", "all":
	default:
		return usagef("--state %q: want live, deleted or all", *state)
	}
	q := url.Values{"state": {*state}}
	if *filter != "" {
		q.Set("filter", *filter)
	}
	var ts []tagInfo
	if err := c.list(repoPath(arg)+"/tags", q, "tags", &ts); err != nil || c.json {
		return err
	}
	return renderTags(c.out, ts)
}

func renderTags(w io.Writer, ts []tagInfo) error {
	rows := make([][]string, len(ts))
	for i, t := range ts {
		numbered, rank := "no", "-"
		if t.Numbered {
			numbered = "yes"
		}
		if t.Rank > 0 {
			rank = strconv.Itoa(t.Rank)
		}
		rows[i] = []string{t.Tag, short(t.Digest), when(&t.Start), when(t.End), numbered, rank, when(t.RestorableUntil)}
	}
	return table(w, []string{"TAG", "DIGEST", "START", "END", "NUMBERED", "RANK", "RESTORABLE UNTIL"}, rows)
}

func tagsHistory(c *cmd, args []string) error {
	c.paged()
	pos, err := c.parse(args, 1)
	if err != nil {
		return err
	}
	repo, tag, err := splitRef(pos[0])
	if err != nil {
		return err
	}
	var es []event
	if err := c.list(tagPath(repo, tag)+"/history", nil, "events", &es); err != nil || c.json {
		return err
	}
	return renderHistory(c.out, es)
}

// renderHistory prints one row per period a tag pointed somewhere: how it
// began (ACTION, ACTOR) and, once over, how it ended (ENDED: action by whom).
func renderHistory(w io.Writer, es []event) error {
	rows := make([][]string, len(es))
	for i, e := range es {
		ended := e.EndAction
		if e.EndedBy != "" {
			ended = strings.TrimSpace(ended + " by " + e.EndedBy)
		}
		rows[i] = []string{strconv.FormatInt(e.ID, 10), when(&e.Start), when(e.End), short(e.Digest),
			orDash(e.Action), orDash(e.Actor), orDash(ended)}
	}
	return table(w, []string{"ID", "START", "END", "DIGEST", "ACTION", "ACTOR", "ENDED"}, rows)
}

func tagsSet(c *cmd, args []string) error {
	expect := c.fs.String("expect", "", "change the tag only if it points at this digest now (\"\": only if it is not live)")
	pos, err := c.parse(args, 2)
	if err != nil {
		return err
	}
	repo, tag, err := splitRef(pos[0])
	if err != nil {
		return err
	}
	if err := checkDigest(pos[1]); err != nil {
		return err
	}
	body := struct {
		Digest         string  `json:"digest"`
		ExpectedDigest *string `json:"expectedDigest,omitempty"`
	}{Digest: pos[1]}
	if c.set("expect") {
		if *expect != "" {
			if err := checkDigest(*expect); err != nil {
				return err
			}
		}
		body.ExpectedDigest = expect
	}
	var r tagResult
	if err := c.call(http.MethodPut, tagPath(repo, tag), body, &r); err != nil || c.json {
		return err
	}
	return printTagResult(c.out, "set", r)
}

func tagsDelete(c *cmd, args []string) error {
	return tagAction(c, args, http.MethodDelete, "", "deleted")
}

func tagsRestore(c *cmd, args []string) error {
	return tagAction(c, args, http.MethodPost, "/restore", "restored")
}

// tagAction sends a bodiless request about REPO:TAG.
func tagAction(c *cmd, args []string, method, suffix, verb string) error {
	pos, err := c.parse(args, 1)
	if err != nil {
		return err
	}
	repo, tag, err := splitRef(pos[0])
	if err != nil {
		return err
	}
	var r tagResult
	if err := c.call(method, tagPath(repo, tag)+suffix, nil, &r); err != nil || c.json {
		return err
	}
	return printTagResult(c.out, verb, r)
}

// printTagResult prints what a tag now is: "set app:latest -> sha256:… (was sha256:…)".
func printTagResult(w io.Writer, verb string, r tagResult) error {
	s := fmt.Sprintf("%s %s:%s -> %s", verb, r.Repository, r.Tag, r.Digest)
	if verb == "deleted" {
		s = fmt.Sprintf("%s %s:%s (was %s)", verb, r.Repository, r.Tag, r.Digest)
	}
	if r.Previous != "" {
		s += " (was " + r.Previous + ")"
	}
	_, err := fmt.Fprintln(w, s)
	return err
}

func rollbackCmd(c *cmd, args []string) error {
	to := c.fs.String("to", "", "the tag (live or deleted) or digest to go back to (required)")
	mode := c.fs.String("mode", "", "promote (default): publish it as the next numbered tag, or --tag; retarget: move --tag to it")
	tag := c.fs.String("tag", "", "the tag to publish (promote) or to move (retarget, default latest)")
	arg, err := c.one(args, checkName)
	if err != nil {
		return err
	}
	if *to == "" {
		return usagef("rollback needs --to TAG|DIGEST")
	}
	if _, err := oci.ParseReference(*to); err != nil {
		return usagef("--to %q: neither a tag nor a digest", *to)
	}
	switch *mode {
	case "", "promote", "retarget":
	default:
		return usagef("--mode %q: want promote or retarget", *mode)
	}
	if *tag != "" && oci.ValidateTag(*tag) != nil {
		return usagef("--tag %q: invalid tag", *tag)
	}
	body := struct {
		To   string `json:"to"`
		Mode string `json:"mode,omitempty"`
		Tag  string `json:"tag,omitempty"`
	}{*to, *mode, *tag}
	var r tagResult
	if err := c.call(http.MethodPost, repoPath(arg)+"/rollback", body, &r); err != nil || c.json {
		return err
	}
	return printTagResult(c.out, "rolled back ("+orDash(r.Mode)+"):", r)
}

// policy is a policy or a rule's part of one: a nil field is not set.
type policy struct {
	Ordering          []string   `json:"ordering,omitempty"`
	Pattern           *string    `json:"pattern,omitempty"`
	ImmutableNumbered *bool      `json:"immutableNumbered,omitempty"`
	RefuseLower       *bool      `json:"refuseLower,omitempty"`
	Retention         *retention `json:"retention,omitempty"`
}

type retention struct {
	KeepNewest      *int    `json:"keepNewest,omitempty"`
	KeepYoungerThan *string `json:"keepYoungerThan,omitempty"`
	KeepPattern     *string `json:"keepPattern,omitempty"`
}

// policyAnswer is what GET and PUT .../policy return.
type policyAnswer struct {
	Repository string `json:"repository"`
	Policy     policy `json:"policy"`
	Rules      []rule `json:"rules"`
}

type rule struct {
	Repositories string          `json:"repositories"`
	Source       string          `json:"source"`
	Policy       json.RawMessage `json:"policy"`
}

func policyGet(c *cmd, args []string) error {
	arg, err := c.one(args, checkPolicyName)
	if err != nil {
		return err
	}
	var p policyAnswer
	if err := c.call(http.MethodGet, repoPath(arg)+"/policy", nil, &p); err != nil || c.json {
		return err
	}
	return renderPolicy(c.out, p)
}

// policyFlags are the flags of `policy set`, each one field of the policy.
var policyFlags = []string{"ordering", "pattern", "immutable-numbered", "refuse-lower", "keep-newest", "keep-younger-than", "keep-pattern"}

func policySet(c *cmd, args []string) error {
	ordering := c.fs.String("ordering", "", "how tags read as versions: integer, semver, pattern, lexical, comma-separated, tried in turn")
	pattern := c.fs.String("pattern", "", "regular expression of the pattern ordering, with named numeric groups")
	immutable := c.fs.Bool("immutable-numbered", false, "refuse to move a numbered tag (--immutable-numbered=false allows it)")
	refuseLower := c.fs.Bool("refuse-lower", false, "refuse a numbered tag lower than the newest (--refuse-lower=false allows it)")
	keepNewest := c.fs.Int("keep-newest", 0, "retention: keep the newest N numbered tags")
	keepYounger := c.fs.String("keep-younger-than", "", "retention: keep numbered tags younger than this (Go duration, e.g. 720h)")
	keepPattern := c.fs.String("keep-pattern", "", "retention: keep numbered tags matching this regular expression")
	file := c.fs.String("file", "", "read the policy as JSON from this file (- for standard input) instead of the flags")
	arg, err := c.one(args, checkPolicyName)
	if err != nil {
		return err
	}
	var given []string
	for _, f := range policyFlags {
		if c.set(f) {
			given = append(given, "--"+f)
		}
	}
	var body json.RawMessage
	switch {
	case c.set("file") && len(given) > 0:
		return usagef("--file and %s: give the policy one way", strings.Join(given, ", "))
	case c.set("file"):
		if body, err = readPolicyFile(*file); err != nil {
			return err
		}
	case len(given) == 0:
		return usagef("policy set: give at least one of --%s, or --file", strings.Join(policyFlags, ", --"))
	default:
		// Only the fields given are sent: the others inherit.
		var p policy
		var r retention
		if c.set("ordering") {
			for _, o := range strings.Split(*ordering, ",") {
				p.Ordering = append(p.Ordering, strings.TrimSpace(o))
			}
		}
		if c.set("pattern") {
			p.Pattern = pattern
		}
		if c.set("immutable-numbered") {
			p.ImmutableNumbered = immutable
		}
		if c.set("refuse-lower") {
			p.RefuseLower = refuseLower
		}
		if c.set("keep-newest") {
			r.KeepNewest = keepNewest
		}
		if c.set("keep-younger-than") {
			if _, err := time.ParseDuration(*keepYounger); err != nil {
				return usagef("--keep-younger-than: %v", err)
			}
			r.KeepYoungerThan = keepYounger
		}
		if c.set("keep-pattern") {
			if _, err := regexp.Compile(*keepPattern); err != nil {
				return usagef("--keep-pattern: %v", err)
			}
			r.KeepPattern = keepPattern
		}
		if r != (retention{}) {
			p.Retention = &r
		}
		if body, err = json.Marshal(p); err != nil {
			return err
		}
	}
	var p policyAnswer
	if err := c.call(http.MethodPut, repoPath(arg)+"/policy", body, &p); err != nil || c.json {
		return err
	}
	return renderPolicy(c.out, p)
}

// readPolicyFile reads a policy document, sent as it is: the server knows
// its fields and says which one is wrong.
func readPolicyFile(name string) (json.RawMessage, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, usagef("--file %s: not JSON", name)
	}
	return b, nil
}

// renderPolicy prints the effective policy under the flag names that set
// it, then the rules it comes from.
func renderPolicy(w io.Writer, p policyAnswer) error {
	e, r := p.Policy, p.Policy.Retention
	if r == nil {
		r = &retention{}
	}
	str := func(s *string) string {
		if s == nil {
			return "-"
		}
		return orDash(*s)
	}
	boolean := func(b *bool) string {
		if b == nil {
			return "-"
		}
		return strconv.FormatBool(*b)
	}
	keepNewest := "-"
	if r.KeepNewest != nil {
		keepNewest = strconv.Itoa(*r.KeepNewest)
	}
	err := table(w, []string{"REPOSITORY", p.Repository}, [][]string{
		{"ordering", orDash(strings.Join(e.Ordering, ","))},
		{"pattern", str(e.Pattern)},
		{"immutable-numbered", boolean(e.ImmutableNumbered)},
		{"refuse-lower", boolean(e.RefuseLower)},
		{"keep-newest", keepNewest},
		{"keep-younger-than", str(r.KeepYoungerThan)},
		{"keep-pattern", str(r.KeepPattern)},
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	return renderRules(w, p.Rules)
}

func renderRules(w io.Writer, rules []rule) error {
	rows := make([][]string, len(rules))
	for i, r := range rules {
		rows[i] = []string{r.Repositories, r.Source, string(r.Policy)}
	}
	return table(w, []string{"RULE", "SOURCE", "POLICY"}, rows)
}

func policyDelete(c *cmd, args []string) error {
	arg, err := c.one(args, checkPolicyName)
	if err != nil {
		return err
	}
	if err := c.call(http.MethodDelete, repoPath(arg)+"/policy", nil, nil); err != nil || c.json {
		return err
	}
	_, err = fmt.Fprintf(c.out, "deleted the policy rule of %s\n", arg)
	return err
}

func policyList(c *cmd, args []string) error {
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	var p struct {
		Rules []rule `json:"rules"`
	}
	if err := c.call(http.MethodGet, "policies", nil, &p); err != nil || c.json {
		return err
	}
	return renderRules(c.out, p.Rules)
}

// retentionAnswer is what GET and POST .../retention return.
type retentionAnswer struct {
	Repository string    `json:"repository"`
	Retention  retention `json:"retention"`
	Delete     []struct {
		Tag    string    `json:"tag"`
		Digest string    `json:"digest"`
		Start  time.Time `json:"start"`
	} `json:"delete"`
}

func retentionCmd(c *cmd, args []string) error {
	dryRun := c.fs.Bool("dry-run", false, "only list the tags retention would delete")
	arg, err := c.one(args, checkName)
	if err != nil {
		return err
	}
	method := http.MethodPost
	if *dryRun {
		method = http.MethodGet
	}
	var r retentionAnswer
	if err := c.call(method, repoPath(arg)+"/retention", nil, &r); err != nil || c.json {
		return err
	}
	return renderRetention(c.out, r, *dryRun)
}

func renderRetention(w io.Writer, r retentionAnswer, dryRun bool) error {
	var keep []string
	if k := r.Retention.KeepNewest; k != nil {
		keep = append(keep, fmt.Sprintf("keep-newest=%d", *k))
	}
	if k := r.Retention.KeepYoungerThan; k != nil && *k != "" {
		keep = append(keep, "keep-younger-than="+*k)
	}
	if k := r.Retention.KeepPattern; k != nil && *k != "" {
		keep = append(keep, "keep-pattern="+*k)
	}
	verb := "deleted"
	if dryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "%s %d tags of %s (%s)\n", verb, len(r.Delete), r.Repository, orDash(strings.Join(keep, " ")))
	if len(r.Delete) == 0 {
		return nil
	}
	rows := make([][]string, len(r.Delete))
	for i, d := range r.Delete {
		rows[i] = []string{d.Tag, short(d.Digest), when(&d.Start)}
	}
	return table(w, []string{"TAG", "DIGEST", "START"}, rows)
}

// gcAnswer is what GET and POST /admin/v1/gc return.
type gcAnswer struct {
	DryRun       bool     `json:"dryRun"`
	Seconds      float64  `json:"seconds"`
	Manifests    []gcItem `json:"manifests"`
	Links        []gcItem `json:"links"`
	Blobs        []gcItem `json:"blobs"`
	Bytes        int64    `json:"bytes"`
	Orphans      []gcItem `json:"orphans"`
	Kept         int      `json:"kept"`
	Uploads      int      `json:"uploads"`
	UploadsBytes int64    `json:"uploadsBytes"`
	Failed       []string `json:"failed"`
}

type gcItem struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Size       int64  `json:"size"`
}

func gcCmd(c *cmd, args []string) error {
	dryRun := c.fs.Bool("dry-run", false, "only report what a run would delete")
	list := c.fs.Bool("list", false, "list every manifest, link and blob, not only the totals")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	method := http.MethodPost
	if *dryRun {
		method = http.MethodGet
	}
	var r gcAnswer
	if err := c.call(method, "gc", nil, &r); err != nil || c.json {
		return err
	}
	return renderGC(c.out, r, *list)
}

func renderGC(w io.Writer, r gcAnswer, list bool) error {
	verb := "deleted"
	if r.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "%s %d blobs (%s), %d blob links, %d manifests, %d orphans, %d uploads (%.1fs)\n",
		verb, len(r.Blobs), size(r.Bytes), len(r.Links), len(r.Manifests), len(r.Orphans), r.Uploads, r.Seconds)
	if r.Kept > 0 {
		fmt.Fprintf(w, "kept %d that pushes needed again during the run\n", r.Kept)
	}
	for _, f := range r.Failed {
		fmt.Fprintf(w, "failed: %s (the next run tries again)\n", f)
	}
	if !list {
		return nil
	}
	var rows [][]string
	for _, s := range []struct {
		kind  string
		items []gcItem
	}{{"manifest", r.Manifests}, {"link", r.Links}, {"blob", r.Blobs}} {
		for _, it := range s.items {
			rows = append(rows, []string{s.kind, orDash(it.Repository), it.Digest, strconv.FormatInt(it.Size, 10)})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	return table(w, []string{"KIND", "REPOSITORY", "DIGEST", "SIZE"}, rows)
}

// storageStats is what GET /admin/v1/stats returns.
type storageStats struct {
	Blobs         int64   `json:"blobs"`
	PhysicalBytes int64   `json:"physicalBytes"`
	LogicalBytes  int64   `json:"logicalBytes"`
	DedupRatio    float64 `json:"dedupRatio"`
	Repositories  int64   `json:"repositories"`
	Manifests     int64   `json:"manifests"`
}

// repositoryStats is what GET /admin/v1/repositories/<name>/stats returns.
type repositoryStats struct {
	Repository   string `json:"repository"`
	Blobs        int64  `json:"blobs"`
	LogicalBytes int64  `json:"logicalBytes"`
	SharedBytes  int64  `json:"sharedBytes"`
	Manifests    int64  `json:"manifests"`
}

func statsCmd(c *cmd, args []string) error {
	repo, err := c.optional(args, checkName)
	if err != nil {
		return err
	}
	if repo != "" {
		var s repositoryStats
		if err := c.call(http.MethodGet, repoPath(repo)+"/stats", nil, &s); err != nil || c.json {
			return err
		}
		return renderRepositoryStats(c.out, s)
	}
	var s storageStats
	if err := c.call(http.MethodGet, "stats", nil, &s); err != nil || c.json {
		return err
	}
	return renderStats(c.out, s)
}

// bytesOf prints a byte count in binary units, and exactly.
func bytesOf(n int64) string { return fmt.Sprintf("%s (%d bytes)", size(n), n) }

func renderStats(w io.Writer, s storageStats) error {
	return table(w, []string{"REGISTRY", ""}, [][]string{
		{"STORED (PHYSICAL)", bytesOf(s.PhysicalBytes)},
		{"REFERENCED (LOGICAL)", bytesOf(s.LogicalBytes)},
		{"SAVED BY DEDUP", bytesOf(max(0, s.LogicalBytes-s.PhysicalBytes))}, // less: unlinked blobs await collection
		{"DEDUP RATIO", fmt.Sprintf("%.2fx", s.DedupRatio)},
		{"BLOBS", strconv.FormatInt(s.Blobs, 10)},
		{"MANIFESTS", strconv.FormatInt(s.Manifests, 10)},
		{"REPOSITORIES", strconv.FormatInt(s.Repositories, 10)},
	})
}

func renderRepositoryStats(w io.Writer, s repositoryStats) error {
	return table(w, []string{"REPOSITORY", s.Repository}, [][]string{
		{"REFERENCED (LOGICAL)", bytesOf(s.LogicalBytes)},
		{"SHARED WITH OTHERS", bytesOf(s.SharedBytes)},
		{"ONLY HERE", bytesOf(s.LogicalBytes - s.SharedBytes)},
		{"BLOBS", strconv.FormatInt(s.Blobs, 10)},
		{"MANIFESTS", strconv.FormatInt(s.Manifests, 10)},
	})
}
