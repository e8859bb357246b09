package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berthhq/berth/internal/testserver"
)

// The garbage collector under load: parallel clients push images that share layers, push them
// again, mount them across repositories, and delete tags and manifests, while collections run back
// to back with a grace period shorter than a push. The clients handle the losers' answers of a race
// with the collector as real clients do, by pushing again. Afterwards every tag pulls whole with
// the right digests, and after a final collection storage holds exactly the blobs the tagged images
// reference: nothing lost, nothing leaked. Once per metadata database and storage driver.

const (
	// gcStressGrace is both --gc.grace and --gc.untagged: shorter than a whole image push under
	// load, so that the collector takes blobs uploaded moments before the manifest that needs
	// them, and untagged manifests almost at once.
	gcStressGrace = 100 * time.Millisecond
	// gcStressDeadline is --gc.link-deadline: each run that deletes bytes waits this long before
	// it forgets them, and pushes of those blobs meanwhile get 503.
	gcStressDeadline = 300 * time.Millisecond

	stressClients = 8
	stressRepos   = 4
	stressLayers  = 16
	// stressRetries bounds the tries of one blob or manifest push: a client that loses that many
	// races in a row is stuck, not unlucky.
	stressRetries = 100
)

// gcStressDuration is how long the clients run in each subtest: $BERTH_GC_STRESS (a Go duration),
// default 8s.
func gcStressDuration(t *testing.T) time.Duration {
	v := os.Getenv("BERTH_GC_STRESS")
	if v == "" {
		return 8 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("BERTH_GC_STRESS=%q: want a positive duration such as 30s", v)
	}
	return d
}

func TestGCStress(t *testing.T) {
	t.Parallel()
	if k := serverKind(); k != "berth" {
		t.Skipf("Berth's garbage collector; BERTH_E2E_SERVER=%s", k)
	}
	d := gcStressDuration(t)
	for _, db := range []string{"SQLite", "PostgreSQL"} {
		t.Run(db, func(t *testing.T) {
			t.Parallel()
			for _, st := range []string{"Disk", "S3"} {
				t.Run(st, func(t *testing.T) {
					t.Parallel()
					runGCStress(t, d, databaseFlags(t, db), stressStorage(t, st))
				})
			}
		})
	}
}

// stressStore is a storage driver's flags and a way to list what it holds.
type stressStore struct {
	flags []string
	// objects returns the size of every blob stored, by digest, and every other object: upload
	// bytes, stray keys, unfinished multipart uploads. Once the clients stop, these are leaks.
	objects func(t *testing.T, s *server) (blobs map[string]int64, other []string)
}

func stressStorage(t *testing.T, name string) stressStore {
	if name == "Disk" {
		return stressStore{objects: diskObjects}
	}
	s3 := testserver.S3(t)  // a new bucket
	const prefix = "stress" // exercised too: every key must be under it
	return stressStore{
		flags: append(s3Flags(s3), "--storage.s3.prefix", prefix),
		objects: func(t *testing.T, _ *server) (map[string]int64, []string) {
			return s3Objects(t, s3, prefix+"/")
		},
	}
}

// diskObjects lists the disk driver's blobs/ and uploads/ under the data directory.
func diskObjects(t *testing.T, s *server) (map[string]int64, []string) {
	t.Helper()
	blobs := map[string]int64{}
	var other []string
	for _, dir := range []string{"blobs", "uploads"} {
		root := filepath.Join(s.Data, dir)
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return nil
			}
			if err != nil || e.IsDir() {
				return err
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(s.Data, p)
			if d, ok := blobKeyDigest(filepath.ToSlash(rel)); ok {
				blobs[d] = info.Size()
			} else {
				other = append(other, fmt.Sprintf("%s (%d bytes)", rel, info.Size()))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return blobs, other
}

// s3Objects lists a bucket, and its unfinished multipart uploads.
func s3Objects(t *testing.T, s3 testserver.S3Server, prefix string) (map[string]int64, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := s3.Client()
	blobs := map[string]int64{}
	var other []string
	pages := awss3.NewListObjectsV2Paginator(client, &awss3.ListObjectsV2Input{Bucket: aws.String(s3.Bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing bucket %s: %v", s3.Bucket, err)
		}
		for _, o := range page.Contents {
			key, size := aws.ToString(o.Key), aws.ToInt64(o.Size)
			rel, under := strings.CutPrefix(key, prefix)
			if d, ok := blobKeyDigest(rel); ok && under {
				blobs[d] = size
			} else {
				other = append(other, fmt.Sprintf("%s (%d bytes)", key, size))
			}
		}
	}
	mp, err := client.ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(s3.Bucket)})
	if err != nil {
		t.Fatalf("listing the multipart uploads of bucket %s: %v", s3.Bucket, err)
	}
	for _, u := range mp.Uploads {
		other = append(other, "unfinished multipart upload on "+aws.ToString(u.Key))
	}
	return blobs, other
}

// blobKeyDigest reads a blob's storage key, blobs/sha256/<first two hex>/<hex>.
func blobKeyDigest(key string) (string, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] != "blobs" || parts[1] != "sha256" || len(parts[3]) != 64 ||
		!strings.HasPrefix(parts[3], parts[2]) || len(parts[2]) != 2 {
		return "", false
	}
	return "sha256:" + parts[3], true
}

// stressBlob is a layer or a config.
type stressBlob struct {
	data   []byte
	digest string
}

// stressImage is an OCI image manifest and its blobs, the config first.
type stressImage struct {
	manifest []byte
	digest   string
	blobs    []*stressBlob
}

// stressCounts are what the clients and the collector did, for the log.
type stressCounts struct {
	images, repushes, manifests, blobs, skipped, mounted, mountFallbacks atomic.Int64
	tagDeletes, manifestDeletes, collectedFirst, pulls                   atomic.Int64
	// The race losers: blob pushes answered 503 UNAVAILABLE, manifest pushes answered
	// MANIFEST_BLOB_UNKNOWN; and the most tries one push needed.
	unavailable, blobUnknown, maxTries atomic.Int64
	// The collector's runs during the stress (POST), dry runs (GET), 409s, and what the runs took.
	gcRuns, gcDry, gcBusy, gcManifests, gcLinks, gcBlobs, gcBytes, gcOrphans, gcKept atomic.Int64
}

func (n *stressCounts) tries(k int) {
	for {
		m := n.maxTries.Load()
		if int64(k) <= m || n.maxTries.CompareAndSwap(m, int64(k)) {
			return
		}
	}
}

// gcReport is the JSON report of /admin/v1/gc.
type gcReport struct {
	DryRun    bool     `json:"dryRun"`
	Manifests []gcItem `json:"manifests"`
	Links     []gcItem `json:"links"`
	Blobs     []gcItem `json:"blobs"`
	Bytes     int64    `json:"bytes"`
	Orphans   []gcItem `json:"orphans"`
	Kept      int      `json:"kept"`
	Uploads   int      `json:"uploads"`
	Failed    []string `json:"failed"`
}

type gcItem struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Size       int64  `json:"size"`
}

func (r gcReport) deleted() bool {
	return len(r.Manifests)+len(r.Links)+len(r.Blobs)+len(r.Orphans)+r.Uploads > 0
}

// stressRun is one subtest's server, shared content and outcome.
type stressRun struct {
	s      *server
	client *http.Client
	repos  []string
	layers []*stressBlob
	n      stressCounts
	// numbers hands out numbered tags: each used once, as numbered tags are immutable.
	numbers atomic.Int64

	stop     chan struct{} // closed at the deadline or at the first failure
	stopOnce sync.Once
	mu       sync.Mutex
	errs     []string
}

func (r *stressRun) halt() { r.stopOnce.Do(func() { close(r.stop) }) }

func (r *stressRun) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// fail records a failure and stops the run.
func (r *stressRun) fail(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	r.halt()
}

// do sends a request; the body is read whole.
func (r *stressRun) do(method, u string, body []byte, header map[string]string) (*http.Response, []byte, error) {
	if strings.HasPrefix(u, "/") {
		u = r.s.URL + u // a Location header
	}
	return doRequest(r.client, method, u, body, header)
}

// unexpected describes an answer the test did not allow for.
func unexpected(resp *http.Response, body []byte) error {
	return fmt.Errorf("%s %s: unexpected %s\nheaders: %v\nbody: %s",
		resp.Request.Method, resp.Request.URL, resp.Status, resp.Header, truncate(body))
}

// isOCIError reports whether the answer is status with the OCI error code.
func isOCIError(resp *http.Response, body []byte, status int, code string) (ociError, bool) {
	if resp.StatusCode != status {
		return ociError{}, false
	}
	e, err := findOCIError(body, code)
	return e, err == nil
}

func runGCStress(t *testing.T, d time.Duration, db []string, st stressStore) {
	flags := slices.Concat([]string{
		"--gc.interval", "0", // only the test's runs
		"--gc.grace", gcStressGrace.String(),
		"--gc.untagged", gcStressGrace.String(),
		"--tags.restore-window", "1ms", // deleted tags keep nothing
		"--gc.link-deadline", gcStressDeadline.String(),
	}, db, st.flags)
	s := startBerth(t, serverOptions{Flags: flags})
	r := &stressRun{
		s:      s,
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * stressClients}},
		stop:   make(chan struct{}),
	}
	defer r.client.CloseIdleConnections()
	for i := range stressRepos {
		r.repos = append(r.repos, fmt.Sprintf("stress/repo%d", i))
	}
	for range stressLayers {
		data := randBytes(t, 1<<10+rand.IntN(63<<10+1)) // 1–64 KiB
		r.layers = append(r.layers, &stressBlob{data: data, digest: digestOf(data)})
	}

	var wg sync.WaitGroup
	clients := make([]*stressClient, stressClients)
	for i := range clients {
		c := &stressClient{r: r, id: i, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
			tags: map[string]map[string]*stressImage{}, pushed: map[string]map[*stressImage]bool{}}
		clients[i] = c
		wg.Go(c.run)
	}
	// The collector back to back, and now and then a dry run, which a run in progress answers 409.
	wg.Go(func() {
		for !r.stopped() {
			r.collect(http.MethodPost)
		}
	})
	wg.Go(func() {
		for !r.stopped() {
			r.collect(http.MethodGet)
			time.Sleep(50 * time.Millisecond)
		}
	})
	start := time.Now()
	timer := time.AfterFunc(d, r.halt)
	wg.Wait()
	timer.Stop()
	took := time.Since(start)
	n := &r.n
	t.Logf("%s of stress: %d images pushed, %d pushed again, %d manifest PUTs, %d blobs uploaded, %d skipped (HEAD), "+
		"%d mounted, %d mounts fell back to an upload; %d tags and %d manifests deleted (%d manifests collected first); %d pulls",
		took.Round(time.Millisecond), n.images.Load(), n.repushes.Load(), n.manifests.Load(), n.blobs.Load(), n.skipped.Load(),
		n.mounted.Load(), n.mountFallbacks.Load(), n.tagDeletes.Load(), n.manifestDeletes.Load(), n.collectedFirst.Load(), n.pulls.Load())
	t.Logf("race losers: %d blob pushes answered 503 UNAVAILABLE, %d manifest pushes answered MANIFEST_BLOB_UNKNOWN; at most %d tries for one push",
		n.unavailable.Load(), n.blobUnknown.Load(), n.maxTries.Load())
	t.Logf("collector: %d runs, %d dry runs, %d answered GC_RUNNING; collected %d manifests, %d links, %d blobs (%d bytes), %d orphans; %d kept at the re-check",
		n.gcRuns.Load(), n.gcDry.Load(), n.gcBusy.Load(), n.gcManifests.Load(), n.gcLinks.Load(), n.gcBlobs.Load(), n.gcBytes.Load(),
		n.gcOrphans.Load(), n.gcKept.Load())
	if len(r.errs) > 0 {
		t.Fatalf("%d failures during the stress; the first:\n%s", len(r.errs), strings.Join(r.errs[:min(len(r.errs), 5)], "\n---\n"))
	}
	if n.gcBlobs.Load() == 0 {
		t.Fatal("no collection during the stress deleted a blob: the test exercised nothing")
	}

	// Where every live tag must point: each client owns its tags.
	want := map[string]map[string]*stressImage{}
	for _, repo := range r.repos {
		want[repo] = map[string]*stressImage{}
		for _, c := range clients {
			maps.Copy(want[repo], c.tags[repo])
		}
	}
	r.expectPulls(t, want, "after the stress")

	// A collection past the grace period leaves exactly the blobs of the tagged images.
	time.Sleep(2 * gcStressGrace)
	final := r.finalCollect(t)
	t.Logf("final collection: %d manifests, %d links, %d blobs (%d bytes), %d orphans, %d uploads",
		len(final.Manifests), len(final.Links), len(final.Blobs), final.Bytes, len(final.Orphans), final.Uploads)
	wantBlobs := map[string]int64{}
	for _, tags := range want {
		for _, img := range tags {
			for _, b := range img.blobs {
				wantBlobs[b.digest] = int64(len(b.data))
			}
		}
	}
	expectStored(t, s, st, wantBlobs)
	if again := r.finalCollect(t); again.deleted() {
		t.Errorf("a second collection still found garbage: %+v", again)
	}
	expectStored(t, s, st, wantBlobs)
	r.expectPulls(t, want, "after the final collection")
	expectCheckClean(t, s, slices.Concat(db, st.flags), len(wantBlobs))
	expectNoErrorsLogged(t, s)
}

// expectNoErrorsLogged fails on errors the server logged other than the 503s the race losers got:
// a failure a client never saw, such as a linked blob whose bytes are gone.
func expectNoErrorsLogged(t *testing.T, s *server) {
	t.Helper()
	s.logs.mu.Lock()
	lines := strings.Split(s.logs.buf.String(), "\n")
	s.logs.mu.Unlock()
	var errs []string
	for _, l := range lines {
		if strings.Contains(l, "level=ERROR") && !strings.Contains(l, "status=503 ") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 {
		t.Errorf("the server logged %d errors; the first:\n%s", len(errs), strings.Join(errs[:min(len(errs), 10)], "\n"))
	}
}

// collect asks for a run (POST) or a dry run (GET) during the stress.
func (r *stressRun) collect(method string) {
	resp, body, err := r.do(method, "/admin/v1/gc", nil, nil)
	if err != nil {
		r.fail("%s /admin/v1/gc: %v", method, err)
		return
	}
	if _, busy := isOCIError(resp, body, http.StatusConflict, "GC_RUNNING"); busy {
		r.n.gcBusy.Add(1)
		return
	}
	var rep gcReport
	if resp.StatusCode != http.StatusOK {
		r.fail("%v", unexpected(resp, body))
		return
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		r.fail("%s /admin/v1/gc: %v\n%s", method, err, truncate(body))
		return
	}
	if dry := method == http.MethodGet; rep.DryRun != dry {
		r.fail("%s /admin/v1/gc: dryRun %v", method, rep.DryRun)
		return
	}
	if len(rep.Failed) > 0 {
		r.fail("%s /admin/v1/gc failed to delete: %v", method, rep.Failed)
		return
	}
	if rep.DryRun {
		r.n.gcDry.Add(1)
		return
	}
	n := &r.n
	n.gcRuns.Add(1)
	n.gcManifests.Add(int64(len(rep.Manifests)))
	n.gcLinks.Add(int64(len(rep.Links)))
	n.gcBlobs.Add(int64(len(rep.Blobs)))
	n.gcBytes.Add(rep.Bytes)
	n.gcOrphans.Add(int64(len(rep.Orphans)))
	n.gcKept.Add(int64(rep.Kept))
}

// finalCollect runs a collection once the clients have stopped.
func (r *stressRun) finalCollect(t *testing.T) gcReport {
	t.Helper()
	resp, body := httpDo(t, http.MethodPost, r.s.URL+"/admin/v1/gc", nil, nil)
	expectStatus(t, resp, body, http.StatusOK)
	var rep gcReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("POST /admin/v1/gc: %v\n%s", err, truncate(body))
	}
	if len(rep.Failed) > 0 {
		t.Fatalf("POST /admin/v1/gc failed to delete: %v", rep.Failed)
	}
	return rep
}

// expectPulls checks each repository's tag list, then pulls every tag: the manifest with its
// digest, and each blob whole.
func (r *stressRun) expectPulls(t *testing.T, want map[string]map[string]*stressImage, when string) {
	t.Helper()
	tags := 0
	for _, repo := range r.repos {
		resp, body := httpDo(t, http.MethodGet, r.s.URL+"/v2/"+repo+"/tags/list", nil, nil)
		expectStatus(t, resp, body, http.StatusOK)
		var list struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("GET %s tags: %v\n%s", repo, err, truncate(body))
		}
		slices.Sort(list.Tags)
		if wantTags := slices.Sorted(maps.Keys(want[repo])); !slices.Equal(list.Tags, wantTags) {
			t.Errorf("%s: %s has tags %v, want %v", when, repo, list.Tags, wantTags)
		}
		blobs := map[string]*stressBlob{}
		for tag, img := range want[repo] {
			tags++
			resp, body := httpDo(t, http.MethodGet, r.s.URL+"/v2/"+repo+"/manifests/"+tag, nil, map[string]string{"Accept": mtOCIManifest})
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: %v", when, unexpected(resp, body))
				continue
			}
			if h, got := resp.Header.Get("Docker-Content-Digest"), digestOf(body); h != got || got != img.digest {
				t.Errorf("%s: %s:%s: Docker-Content-Digest %s, body hashes to %s, want %s", when, repo, tag, h, got, img.digest)
			}
			for _, b := range img.blobs {
				blobs[b.digest] = b
			}
		}
		for d, b := range blobs {
			resp, body := httpDo(t, http.MethodGet, r.s.URL+"/v2/"+repo+"/blobs/"+d, nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: blob of a tagged image: %v", when, unexpected(resp, body))
				continue
			}
			if got := digestOf(body); got != d || len(body) != len(b.data) {
				t.Errorf("%s: %s blob %s: %d bytes hashing to %s, want %d bytes", when, repo, d, len(body), got, len(b.data))
			}
		}
	}
	t.Logf("%s: %d tags in %d repositories pull whole", when, tags, len(r.repos))
}

// expectStored checks that storage holds exactly the wanted blobs, and nothing else.
func expectStored(t *testing.T, s *server, st stressStore, want map[string]int64) {
	t.Helper()
	got, other := st.objects(t, s)
	var wantBytes, gotBytes int64
	var wrong []string
	for d, size := range want {
		wantBytes += size
		if g, ok := got[d]; !ok {
			wrong = append(wrong, fmt.Sprintf("lost: blob %s (%d bytes) of a tagged image is not in storage", d, size))
		} else if g != size {
			wrong = append(wrong, fmt.Sprintf("blob %s is stored with %d bytes, want %d", d, g, size))
		}
	}
	for d, size := range got {
		gotBytes += size
		if _, ok := want[d]; !ok {
			wrong = append(wrong, fmt.Sprintf("leaked: blob %s (%d bytes) is stored, but no tagged image references it", d, size))
		}
	}
	for _, o := range other {
		wrong = append(wrong, "leaked: "+o)
	}
	if len(wrong) > 0 || gotBytes != wantBytes || len(got) != len(want) {
		slices.Sort(wrong)
		if len(wrong) > 30 {
			wrong = append(wrong[:30], fmt.Sprintf("… and %d more", len(wrong)-30))
		}
		t.Errorf("storage holds %d blobs (%d bytes) and %d other objects; the tagged images reference %d blobs (%d bytes):\n%s",
			len(got), gotBytes, len(other), len(want), wantBytes, strings.Join(wrong, "\n"))
	}
}

// expectCheckClean runs berth check against the running server's database and storage.
func expectCheckClean(t *testing.T, s *server, flags []string, blobs int) {
	t.Helper()
	args := slices.Concat([]string{"check", "--json", "--rehash", "--grace", "0", "--data", s.Data}, flags)
	out, errOut, err := tool{path: berthBin(t)}.exec(args...)
	var rep struct {
		Blobs         int64             `json:"blobs"`
		Objects       int64             `json:"objects"`
		Missing       []json.RawMessage `json:"missing"`
		SizeMismatch  []json.RawMessage `json:"size_mismatch"`
		Corrupt       []json.RawMessage `json:"corrupt"`
		Orphans       []json.RawMessage `json:"orphans"`
		OrphanUploads []json.RawMessage `json:"orphan_uploads"`
		Stray         []json.RawMessage `json:"stray"`
	}
	if jerr := json.Unmarshal(out, &rep); err != nil || jerr != nil {
		t.Fatalf("berth check: %v %v\nstdout:\n%s\nstderr:\n%s", err, jerr, out, errOut)
	}
	if len(rep.Missing)+len(rep.SizeMismatch)+len(rep.Corrupt)+len(rep.Orphans)+len(rep.OrphanUploads)+len(rep.Stray) > 0 ||
		rep.Blobs != int64(blobs) || rep.Objects != int64(blobs) {
		t.Errorf("berth check, want %d blobs and nothing wrong:\n%s", blobs, out)
		return
	}
	t.Logf("berth check --rehash: %d blobs, nothing missing, mis-sized, corrupt or orphaned", rep.Blobs)
}

// stressClient pushes, deletes and pulls in a loop, one request at a time, and knows where each of
// its tags points: no other client touches them.
type stressClient struct {
	r      *stressRun
	id     int
	rng    *rand.Rand
	images []*stressImage
	tags   map[string]map[string]*stressImage // repository → tag → image
	// pushed are the images pushed to each repository; untagged, the collector may have taken them.
	pushed map[string]map[*stressImage]bool
}

func (c *stressClient) run() {
	for !c.r.stopped() {
		var err error
		switch p := c.rng.IntN(100); {
		case p < 35 || len(c.images) == 0:
			err = c.pushNew()
		case p < 50:
			err = c.repush()
		case p < 65:
			err = c.deleteTag()
		case p < 75:
			err = c.deleteManifest()
		default:
			err = c.pull()
		}
		if err != nil {
			c.r.fail("client %d: %v", c.id, err)
			return
		}
	}
}

// newImage makes an image of one to four shared layers and a config of its own.
func (c *stressClient) newImage() *stressImage {
	layers := make([]*stressBlob, 0, 4)
	for _, i := range c.rng.Perm(stressLayers)[:1+c.rng.IntN(4)] {
		layers = append(layers, c.r.layers[i])
	}
	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.digest
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		"config":       map[string]any{"Labels": map[string]string{"stress": fmt.Sprintf("client %d image %d %x", c.id, len(c.images), c.rng.Uint64())}},
	})
	img := &stressImage{blobs: []*stressBlob{{data: config, digest: digestOf(config)}}}
	m := manifest{
		SchemaVersion: 2,
		MediaType:     mtOCIManifest,
		Config:        &descriptor{MediaType: mtOCIConfig, Digest: img.blobs[0].digest, Size: int64(len(config))},
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, descriptor{MediaType: mtOCILayerGzip, Digest: l.digest, Size: int64(len(l.data))})
		img.blobs = append(img.blobs, l)
	}
	img.manifest, _ = json.Marshal(m)
	img.digest = digestOf(img.manifest)
	return img
}

func (c *stressClient) repo() string { return c.r.repos[c.rng.IntN(len(c.r.repos))] }

func (c *stressClient) pushNew() error {
	img := c.newImage()
	c.images = append(c.images, img)
	c.r.n.images.Add(1)
	return c.pushTagged(c.repo(), img)
}

// repush pushes one of the client's images again, to any repository: its blobs may have been
// collected meanwhile, or be going.
func (c *stressClient) repush() error {
	c.r.n.repushes.Add(1)
	return c.pushTagged(c.repo(), c.images[c.rng.IntN(len(c.images))])
}

// pushTagged pushes img under one of the client's two moving tags, a new numbered tag, both (by
// digest, with ?tag=), or no tag at all, which leaves it to the collector.
func (c *stressClient) pushTagged(repo string, img *stressImage) error {
	moving := fmt.Sprintf("c%d-%c", c.id, 'a'+c.rng.IntN(2))
	numbered := strconv.FormatInt(c.r.numbers.Add(1), 10)
	var ref string
	var tags []string
	switch c.rng.IntN(8) {
	case 0, 1, 2:
		ref, tags = moving, []string{moving}
	case 3, 4:
		ref, tags = numbered, []string{numbered}
	case 5, 6:
		ref, tags = img.digest, []string{moving, numbered}
	default:
		ref = img.digest
	}
	if err := c.pushImage(repo, img, ref, tags); err != nil {
		return err
	}
	if c.tags[repo] == nil {
		c.tags[repo] = map[string]*stressImage{}
		c.pushed[repo] = map[*stressImage]bool{}
	}
	for _, tag := range tags {
		c.tags[repo][tag] = img
	}
	c.pushed[repo][img] = true
	return nil
}

// pushImage sends the image's blobs, then its manifest; a manifest refused because the collector
// unlinked one of its blobs since is retried after pushing that blob again.
func (c *stressClient) pushImage(repo string, img *stressImage, ref string, tags []string) error {
	if err := c.sendBlobs(repo, img.blobs); err != nil {
		return err
	}
	u := "/v2/" + repo + "/manifests/" + ref
	if ref == img.digest && len(tags) > 0 {
		u += "?" + url.Values{"tag": tags}.Encode()
	}
	for try := 1; ; try++ {
		resp, body, err := c.r.do(http.MethodPut, u, img.manifest, map[string]string{"Content-Type": mtOCIManifest})
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusCreated {
			c.r.n.manifests.Add(1)
			c.r.n.tries(try)
			if h := resp.Header.Get("Docker-Content-Digest"); h != img.digest {
				return fmt.Errorf("PUT %s: Docker-Content-Digest %q, want %s", u, h, img.digest)
			}
			return nil
		}
		e, lost := isOCIError(resp, body, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
		if !lost {
			return unexpected(resp, body)
		}
		c.r.n.blobUnknown.Add(1)
		if try == stressRetries {
			return fmt.Errorf("PUT %s: still MANIFEST_BLOB_UNKNOWN after %d tries", u, try)
		}
		var detail struct {
			Digest string `json:"digest"`
		}
		json.Unmarshal(e.Detail, &detail)
		i := slices.IndexFunc(img.blobs, func(b *stressBlob) bool { return b.digest == detail.Digest })
		if i < 0 {
			return fmt.Errorf("PUT %s: MANIFEST_BLOB_UNKNOWN names %q, not a blob of the image\n%s", u, detail.Digest, body)
		}
		if err := c.sendBlob(repo, img.blobs[i]); err != nil {
			return err
		}
	}
}

// sendBlobs pushes the blobs the repository does not have, as a HEAD says, or now and then all of
// them, as some clients do.
func (c *stressClient) sendBlobs(repo string, blobs []*stressBlob) error {
	check := c.rng.IntN(5) > 0
	for _, b := range blobs {
		if check {
			resp, body, err := c.r.do(http.MethodHead, "/v2/"+repo+"/blobs/"+b.digest, nil, nil)
			if err != nil {
				return err
			}
			switch resp.StatusCode {
			case http.StatusOK:
				if resp.ContentLength != int64(len(b.data)) {
					return fmt.Errorf("HEAD %s blob %s: Content-Length %d, want %d", repo, b.digest, resp.ContentLength, len(b.data))
				}
				c.r.n.skipped.Add(1)
				continue
			case http.StatusNotFound:
			default:
				return unexpected(resp, body)
			}
		}
		if err := c.sendBlob(repo, b); err != nil {
			return err
		}
	}
	return nil
}

// sendBlob pushes a blob, from scratch again each time the registry answers 503: the collector was
// deleting it.
func (c *stressClient) sendBlob(repo string, b *stressBlob) error {
	for try := 1; ; try++ {
		again, err := c.tryBlob(repo, b)
		if err != nil {
			return err
		}
		if !again {
			c.r.n.tries(try)
			return nil
		}
		c.r.n.unavailable.Add(1)
		if try == stressRetries {
			return fmt.Errorf("blob %s to %s: still 503 after %d tries", b.digest, repo, try)
		}
		// Retry-After says 1s; shorter here, to race the collector again soon. The blob's row
		// goes when its run has waited the link deadline.
		time.Sleep(time.Duration(min(try, 10)) * 10 * time.Millisecond)
	}
}

// tryBlob pushes a blob once, in one of the ways clients do: a cross-repository mount (which falls
// back to an upload), a monolithic POST, or a session filled by one PUT or by PATCHes. again
// reports a 503 UNAVAILABLE.
func (c *stressClient) tryBlob(repo string, b *stressBlob) (again bool, err error) {
	uploads := "/v2/" + repo + "/blobs/uploads/"
	var resp *http.Response
	var body []byte
	switch k := c.rng.IntN(4); k {
	case 0:
		from := c.repo()
		for from == repo {
			from = c.repo()
		}
		resp, body, err = c.r.do(http.MethodPost, uploads+"?"+url.Values{"mount": {b.digest}, "from": {from}}.Encode(), nil, nil)
		if err != nil {
			return false, err
		}
		if resp.StatusCode == http.StatusCreated {
			c.r.n.mounted.Add(1)
			return false, blobCreated(resp, body, b)
		}
		c.r.n.mountFallbacks.Add(1)
	case 1:
		resp, body, err = c.r.do(http.MethodPost, uploads+"?digest="+b.digest, b.data, map[string]string{"Content-Type": "application/octet-stream"})
		if err != nil {
			return false, err
		}
		return c.blobPushed(resp, body, b)
	default:
		resp, body, err = c.r.do(http.MethodPost, uploads, nil, nil)
		if err != nil {
			return false, err
		}
	}
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") == "" {
		return false, unexpected(resp, body)
	}
	return c.upload(resp.Header.Get("Location"), b)
}

// upload fills an upload session with one PUT, or with one to three PATCHes and a PUT that carries
// the rest of the bytes or none.
func (c *stressClient) upload(session string, b *stressBlob) (again bool, err error) {
	data := b.data
	if c.rng.IntN(2) == 0 {
		patches := 1 + c.rng.IntN(3)
		pieces := patches + c.rng.IntN(2)
		off := 0
		for i := range patches {
			end := len(b.data) * (i + 1) / pieces
			resp, body, err := c.r.do(http.MethodPatch, session, b.data[off:end], map[string]string{
				"Content-Type":  "application/octet-stream",
				"Content-Range": fmt.Sprintf("%d-%d", off, end-1),
			})
			if err != nil {
				return false, err
			}
			if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != fmt.Sprintf("0-%d", end-1) {
				return false, unexpected(resp, body)
			}
			session, off = resp.Header.Get("Location"), end
		}
		data = b.data[off:]
		if len(data) == 0 {
			data = nil
		}
	}
	u, err := url.Parse(session)
	if err != nil {
		return false, err
	}
	q := u.Query()
	q.Set("digest", b.digest)
	u.RawQuery = q.Encode()
	resp, body, err := c.r.do(http.MethodPut, u.String(), data, map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		return false, err
	}
	return c.blobPushed(resp, body, b)
}

// blobPushed reads the answer to the request that completes a blob push.
func (c *stressClient) blobPushed(resp *http.Response, body []byte, b *stressBlob) (again bool, err error) {
	if _, ok := isOCIError(resp, body, http.StatusServiceUnavailable, "UNAVAILABLE"); ok {
		if resp.Header.Get("Retry-After") == "" {
			return false, fmt.Errorf("%s %s: 503 without Retry-After", resp.Request.Method, resp.Request.URL)
		}
		return true, nil
	}
	if err := blobCreated(resp, body, b); err != nil {
		return false, err
	}
	c.r.n.blobs.Add(1)
	return false, nil
}

func blobCreated(resp *http.Response, body []byte, b *stressBlob) error {
	if resp.StatusCode != http.StatusCreated {
		return unexpected(resp, body)
	}
	if h := resp.Header.Get("Docker-Content-Digest"); h != b.digest {
		return fmt.Errorf("%s %s: Docker-Content-Digest %q, want %s", resp.Request.Method, resp.Request.URL, h, b.digest)
	}
	return nil
}

// someTag picks one of the client's live tags; ok is false when it has none.
func (c *stressClient) someTag() (repo, tag string, img *stressImage, ok bool) {
	type live struct{ repo, tag string }
	var all []live
	for _, repo := range c.r.repos {
		for _, tag := range slices.Sorted(maps.Keys(c.tags[repo])) {
			all = append(all, live{repo, tag})
		}
	}
	if len(all) == 0 {
		return "", "", nil, false
	}
	l := all[c.rng.IntN(len(all))]
	return l.repo, l.tag, c.tags[l.repo][l.tag], true
}

// deleteTag deletes one of the client's tags, through the OCI API or the admin API.
func (c *stressClient) deleteTag() error {
	repo, tag, img, ok := c.someTag()
	if !ok {
		return nil
	}
	if c.rng.IntN(2) == 0 {
		resp, body, err := c.r.do(http.MethodDelete, "/v2/"+repo+"/manifests/"+tag, nil, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusAccepted {
			return unexpected(resp, body)
		}
	} else {
		resp, body, err := c.r.do(http.MethodDelete, adminRepositories+repo+"/tags/"+tag, nil, nil)
		if err != nil {
			return err
		}
		var change struct {
			Digest string `json:"digest"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &change) != nil {
			return unexpected(resp, body)
		}
		if change.Digest != img.digest {
			return fmt.Errorf("DELETE %s:%s (admin): it pointed at %s, want %s", repo, tag, change.Digest, img.digest)
		}
	}
	delete(c.tags[repo], tag)
	c.r.n.tagDeletes.Add(1)
	return nil
}

// deleteManifest deletes by digest one of the images the client pushed to a repository, which ends
// its tags there. One that no tag kept may have been collected already: 404.
func (c *stressClient) deleteManifest() error {
	repo := c.repo()
	imgs := slices.Collect(maps.Keys(c.pushed[repo]))
	if len(imgs) == 0 {
		return nil
	}
	img := imgs[c.rng.IntN(len(imgs))]
	tagged := slices.Contains(slices.Collect(maps.Values(c.tags[repo])), img)
	resp, body, err := c.r.do(http.MethodDelete, "/v2/"+repo+"/manifests/"+img.digest, nil, nil)
	if err != nil {
		return err
	}
	switch _, gone := isOCIError(resp, body, http.StatusNotFound, "MANIFEST_UNKNOWN"); {
	case resp.StatusCode == http.StatusAccepted:
		c.r.n.manifestDeletes.Add(1)
	case gone && !tagged:
		c.r.n.collectedFirst.Add(1)
	default:
		return fmt.Errorf("deleting a manifest %s (tagged: %v): %w", repo, tagged, unexpected(resp, body))
	}
	maps.DeleteFunc(c.tags[repo], func(_ string, i *stressImage) bool { return i == img })
	delete(c.pushed[repo], img)
	return nil
}

// pull fetches one of the client's tagged images whole: whatever the collector is doing, it must
// be there.
func (c *stressClient) pull() error {
	repo, tag, img, ok := c.someTag()
	if !ok {
		return nil
	}
	resp, body, err := c.r.do(http.MethodGet, "/v2/"+repo+"/manifests/"+tag, nil, map[string]string{"Accept": mtOCIManifest})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pulling tagged %s:%s: %w", repo, tag, unexpected(resp, body))
	}
	if !bytes.Equal(body, img.manifest) || resp.Header.Get("Docker-Content-Digest") != img.digest {
		return fmt.Errorf("pulling %s:%s: got %s (Docker-Content-Digest %s), want %s", repo, tag, digestOf(body),
			resp.Header.Get("Docker-Content-Digest"), img.digest)
	}
	for _, b := range img.blobs {
		resp, body, err := c.r.do(http.MethodGet, "/v2/"+repo+"/blobs/"+b.digest, nil, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("pulling tagged %s:%s: %w", repo, tag, unexpected(resp, body))
		}
		if !bytes.Equal(body, b.data) {
			return fmt.Errorf("pulling %s:%s: blob %s: %d bytes hashing to %s", repo, tag, b.digest, len(body), digestOf(body))
		}
	}
	c.r.n.pulls.Add(1)
	return nil
}
