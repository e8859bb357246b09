package test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// conformanceEnv enables every API and data set of distribution-spec v1.1, plus upload cancel, the
// Docker-Content-Digest headers and pushing by digest with ?tag= (from the spec's next version), which
// Berth promises. Any test the suite skips fails TestConformance. Left disabled, each with its reason:
//   - OCI_DATA_SPARSE: manifests referencing blobs that were never pushed; Berth refuses them with
//     MANIFEST_BLOB_UNKNOWN (design invariant 4), which v1.1 allows;
//   - OCI_API_BLOBS_MOUNT_ANONYMOUS: a mount without from= that finds the blob in any repository. v1.1
//     says a registry MAY do it and otherwise answers 202; Berth answers 202, since linking a blob
//     the client never proved it could read would break isolation (design invariant 2).
var conformanceEnv = []string{
	"OCI_VERSION=1.1",
	"OCI_TLS=disabled",
	"OCI_LOG=warn",
	"OCI_API_PING=true",
	"OCI_API_PULL=true",
	"OCI_API_PUSH=true",
	"OCI_API_BLOBS_ATOMIC=true",
	"OCI_API_BLOBS_DELETE=true",
	"OCI_API_BLOBS_DIGEST_HEADER=true",
	"OCI_API_BLOBS_MOUNT_ANONYMOUS=false",
	"OCI_API_BLOBS_UPLOAD_CANCEL=true",
	"OCI_API_MANIFESTS_ATOMIC=true",
	"OCI_API_MANIFESTS_DELETE=true",
	"OCI_API_MANIFESTS_DIGEST_HEADER=true",
	"OCI_API_MANIFESTS_TAG_PARAM=true",
	"OCI_API_TAGS_ATOMIC=true",
	"OCI_API_TAGS_DELETE=true",
	"OCI_API_TAGS_LIST=true",
	"OCI_API_REFERRER=true",
	"OCI_DATA_IMAGE=true",
	"OCI_DATA_INDEX=true",
	"OCI_DATA_INDEX_LIST=true",
	"OCI_DATA_SPARSE=false",
	"OCI_DATA_ARTIFACT=true",
	"OCI_DATA_SUBJECT=true",
	"OCI_DATA_SUBJECT_MISSING=true",
	"OCI_DATA_ARTIFACT_LIST=true",
	"OCI_DATA_SUBJECT_LIST=true",
	"OCI_DATA_DATA_FIELD=true",
	"OCI_DATA_NONDISTRIBUTABLE=true",
	"OCI_DATA_CUSTOM_FIELDS=true",
	"OCI_DATA_NO_LAYERS=true",
	"OCI_DATA_EMPTY_BLOB=true",
	"OCI_DATA_SHA512=true",
}

// TestConformance runs the official OCI distribution-spec conformance suite with all workflows (pull,
// push, content discovery, content management) enabled, on the shared server: its deletes in its own
// repositories run beside the other tests' pushes of the same common blobs.
func TestConformance(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	runConformance(t, s.Host, s.dir)
}

// runConformance runs the suite against the registry at host, keeping its report under keep; env
// adds to the suite's environment (OCI_USERNAME and OCI_PASSWORD for a registry that asks for them).
func runConformance(t *testing.T, host, keep string, env ...string) {
	t.Helper()
	bin := conformanceBin(t)
	// Kept with the server logs if the run fails.
	results := filepath.Join(keep, "conformance-results-"+hex.EncodeToString(randBytes(t, 4)))
	// An empty working directory: the suite would read an oci-conformance.yaml found there.
	conf := tool{path: bin, dir: t.TempDir(), env: slices.Concat([]string{
		"OCI_REGISTRY=" + host,
		"OCI_REPO1=" + uniqueRepo(t, "conformance"),
		"OCI_REPO2=" + uniqueRepo(t, "conformance-crossmount"),
		"OCI_RESULTS_DIR=" + results,
	}, conformanceEnv, env)}

	start := time.Now()
	stdout, stderr, err := conf.exec()
	rep := parseConformance(stdout)
	t.Logf("conformance (%s, %s): result %s; %d passed, %d failed, %d errors, %d skipped, %d disabled",
		conformanceVersion, time.Since(start).Round(time.Millisecond), rep.result,
		rep.counts["Pass"], rep.counts["FAIL"], rep.counts["Error"], rep.counts["Skip"], rep.counts["Disabled"])
	if len(rep.disabledAPIs) > 0 {
		t.Logf("APIs left disabled by configuration: %s", strings.Join(rep.disabledAPIs, ", "))
	}
	if rep.result == "" {
		t.Fatalf("no result line in the conformance output (err %v)\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	const shown = 40
	for i, f := range rep.problems {
		if i == shown {
			t.Errorf("conformance: … and %d more problems", len(rep.problems)-shown)
			break
		}
		t.Errorf("conformance: %s", f)
	}
	if rep.counts["Pass"] == 0 {
		t.Errorf("conformance passed no test")
	}
	if rep.result != "Pass" || err != nil || t.Failed() {
		t.Errorf("conformance result %s (exit: %v); the HTML report with every request and response is %s\nstderr:\n%s",
			rep.result, err, filepath.Join(results, "report.html"), truncate(stderr))
	}
}

// conformanceReport is what TestConformance reads from the suite's stdout.
type conformanceReport struct {
	result       string         // "Pass" or "FAIL"
	counts       map[string]int // by status name
	problems     []string       // leaf tests that failed, errored or were skipped, with their errors
	disabledAPIs []string
}

var (
	// "  Pass..........:        123" in the summary after "OCI Conformance Result: Pass".
	confCount = regexp.MustCompile(`^\s+(Pass|Skip|Disabled|FAIL|Error|Total)\.+:\s+(\d+)$`)
	// "    OCI Conformance Test/…/name: FAIL" in the tree of results.
	confLeaf = regexp.MustCompile(`^(\s*)(.+): (FAIL|Error|Skip|Pass|Disabled|Unknown)$`)
	// "  blob cancel.....:   Disabled" in the API conformance section.
	confAPI = regexp.MustCompile(`^\s+(.+?)\.*:\s+(\S+)$`)
)

func parseConformance(stdout []byte) conformanceReport {
	rep := conformanceReport{counts: map[string]int{}}
	section := "tree"
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Test results"):
			section = "tree"
			continue
		case strings.HasPrefix(line, "Configuration:"):
			section = "config"
			continue
		case strings.HasPrefix(line, "OCI Conformance Result: "):
			rep.result = strings.TrimPrefix(line, "OCI Conformance Result: ")
			section = "counts"
			continue
		case strings.HasPrefix(line, "API conformance:"):
			section = "api"
			continue
		case strings.HasPrefix(line, "Data conformance:"):
			section = "data"
			continue
		}
		switch section {
		case "tree":
			if m := confLeaf.FindStringSubmatch(line); m != nil {
				if m[3] == "FAIL" || m[3] == "Error" || m[3] == "Skip" || m[3] == "Unknown" {
					rep.problems = append(rep.problems, m[2]+": "+m[3])
				}
			} else if strings.HasPrefix(strings.TrimSpace(line), "- ") && len(rep.problems) > 0 {
				rep.problems[len(rep.problems)-1] += "\n    " + strings.TrimSpace(line)
			}
		case "counts":
			if m := confCount.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[2])
				rep.counts[m[1]] = n
			}
		case "api", "data":
			if m := confAPI.FindStringSubmatch(line); m != nil && m[2] != "Pass" {
				if m[2] == "Disabled" {
					rep.disabledAPIs = append(rep.disabledAPIs, section+" "+m[1])
				} else {
					rep.problems = append(rep.problems, section+" "+m[1]+": "+m[2])
				}
			}
		}
	}
	rep.problems = dedupeParents(rep.problems)
	return rep
}

// dedupeParents drops tree entries whose failure is only that of a child listed after them.
func dedupeParents(problems []string) []string {
	var out []string
	for i, p := range problems {
		name := strings.SplitN(p, ": ", 2)[0]
		parent := false
		for _, q := range problems[i+1:] {
			if strings.HasPrefix(q, name+"/") {
				parent = true
				break
			}
		}
		if !parent {
			out = append(out, p)
		}
	}
	return out
}
