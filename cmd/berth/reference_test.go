package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// configReference is docs/configuration.md, relative to this package.
const configReference = "../../docs/configuration.md"

// referenceSections are the headings of the reference, by the first part
// of an option's name; options without a dot are "General".
var referenceSections = []struct{ prefix, title, about string }{
	{"", "General", ""},
	{"storage", "Storage", "Where blob bytes live: a directory (`disk`) or an S3 bucket (`s3`)."},
	{"tags", "Tags", "The default tag policy; `policies:` in the file refines it per repository."},
	{"gc", "Garbage collection", ""},
	{"uploads", "Uploads", ""},
	{"webhooks", "Webhooks", "How deliveries are made; the endpoints themselves are `webhooks.endpoints:` in the file, or `berth webhooks add`."},
	{"auth", "Authentication", ""},
	{"tls", "TLS", ""},
	{"limits", "Limits", ""},
	{"log", "Logging", ""},
	{"debug", "Debug listener", ""},
}

// TestConfigReference keeps docs/configuration.md the rendering of serve's
// flags. BERTH_UPDATE_DOCS=1 rewrites it.
func TestConfigReference(t *testing.T) {
	want := renderConfigReference(t)
	if os.Getenv("BERTH_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(configReference, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(configReference)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("docs/configuration.md is not the rendering of the flags; run BERTH_UPDATE_DOCS=1 go test ./cmd/berth -run TestConfigReference")
	}
}

func renderConfigReference(t *testing.T) string {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	(&config{}).flags(fs)
	bySection := map[string][]*flag.Flag{}
	fs.VisitAll(func(f *flag.Flag) { // in name order
		prefix, _, dotted := strings.Cut(f.Name, ".")
		if !dotted {
			prefix = ""
		}
		bySection[prefix] = append(bySection[prefix], f)
	})

	var b strings.Builder
	b.WriteString(`# Configuration reference

<!-- Generated from the flags of berth serve by TestConfigReference (cmd/berth/reference_test.go):
     do not edit; run BERTH_UPDATE_DOCS=1 go test ./cmd/berth -run TestConfigReference. -->

Every option of ` + "`berth serve`" + ` can be set three ways; a flag overrides the environment, which overrides the file.

- **In the YAML file** named by ` + "`--config`" + ` (or ` + "`BERTH_CONFIG`" + `): a dotted name nests, so ` + "`log.level`" + ` is
  ` + "`level:`" + ` under ` + "`log:`" + `. An unknown key is an error, and so is a value that does not parse.
- **In the environment**, as ` + "`BERTH_`" + ` and the name in capitals, dots and dashes as underscores.
- **As a flag**, ` + "`--name value`" + ` (booleans: ` + "`--name`" + ` or ` + "`--name=false`" + `).

Durations are written as Go writes them: ` + "`90s`, `10m`, `1h30m`, `336h`" + `. ` + "`berth check`" + ` takes the same options, to find
the same storage and database, and flags of its own (` + "`berth check --help`" + `).

Two lists exist only in the file: ` + "`policies:`" + `, the per-repository tag policies, and ` + "`webhooks.endpoints:`" + `, the
webhooks; the [README](../README.md) shows both.
`)
	seen := 0
	for _, s := range referenceSections {
		flags := bySection[s.prefix]
		if len(flags) == 0 {
			t.Errorf("no option starts with %s.", s.prefix)
			continue
		}
		seen += len(flags)
		fmt.Fprintf(&b, "\n## %s\n\n", s.title)
		if s.about != "" {
			b.WriteString(s.about + "\n\n")
		}
		b.WriteString("| YAML key | Flag | Environment | Default | Description |\n| --- | --- | --- | --- | --- |\n")
		for _, f := range flags {
			fmt.Fprintf(&b, "| `%s` | `--%s` | `%s` | %s | %s |\n", f.Name, f.Name, envName(f.Name), referenceDefault(f),
				markdownText.Replace(f.Usage))
		}
	}
	total := 0
	fs.VisitAll(func(*flag.Flag) { total++ })
	if seen != total {
		t.Errorf("%d options are in no section of referenceSections", total-seen)
	}
	return b.String()
}

// markdownText escapes what Markdown would read as markup in a table cell.
var markdownText = strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;", "*", `\*`, "_", `\_`)

// referenceDefault is a flag's default as the reference shows it: durations
// without their zero minutes and seconds, nothing for an empty string.
func referenceDefault(f *flag.Flag) string {
	v := f.DefValue
	if g, ok := f.Value.(flag.Getter); ok {
		if d, ok := g.Get().(time.Duration); ok {
			v = shortDuration(d)
		}
	}
	if d, ok := f.Value.(*durations); ok {
		v = d.String()
	}
	if v == "" {
		return ""
	}
	return "`" + v + "`"
}

// shortDuration writes 1h0m0s as 1h and 2m0s as 2m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
