package notify

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test vector of the Standard Webhooks reference library:
// github.com/standard-webhooks/standard-webhooks, libraries/go/webhook_test.go, TestWebhookSign.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

const tolerance = 5 * time.Minute

func TestSignStandardWebhooksVector(t *testing.T) {
	h := http.Header{}
	ts := time.Unix(vectorTimestamp, 0)
	Sign(h, vectorID, ts, []byte(vectorBody), []string{vectorSecret})
	for name, want := range map[string]string{
		"webhook-id":        vectorID,
		"webhook-timestamp": "1614265330",
		"webhook-signature": vectorSignature,
		"Idempotency-Key":   vectorID,
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if err := Verify(h, []byte(vectorBody), []string{vectorSecret}, ts, tolerance); err != nil {
		t.Errorf("Verify of the vector: %v", err)
	}
}

// TestSignOpenSSL checks both signatures against OpenSSL, an implementation
// that shares no code with this package: the Standard Webhooks one over
// id.timestamp.body with the decoded key, and Flux's X-Signature with the
// command its generic-hmac documentation gives.
func TestSignOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not on PATH")
	}
	hmacHex := func(keyOpt, data string) string {
		t.Helper()
		cmd := exec.Command(openssl, "dgst", "-sha256", "-mac", "HMAC", "-macopt", keyOpt, "-r")
		cmd.Stdin = strings.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		return strings.Fields(string(out))[0]
	}
	body := `{"specversion":"1.0","id":"evt-1"}`
	id, ts := "evt-1", time.Unix(1700000000, 0)
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(vectorSecret, "whsec_"))
	plain := "flux token"

	h := http.Header{}
	Sign(h, id, ts, []byte(body), []string{plain, vectorSecret})
	sum, _ := hex.DecodeString(hmacHex("hexkey:"+hex.EncodeToString(key), id+".1700000000."+body))
	sumPlain, _ := hex.DecodeString(hmacHex("hexkey:"+hex.EncodeToString([]byte(plain)), id+".1700000000."+body))
	want := "v1," + base64.StdEncoding.EncodeToString(sumPlain) + " v1," + base64.StdEncoding.EncodeToString(sum)
	if got := h.Get("webhook-signature"); got != want {
		t.Errorf("webhook-signature %q, want %q (openssl)", got, want)
	}
	if got, want := h.Get("X-Signature"), "sha256="+hmacHex("key:"+plain, body); got != want {
		t.Errorf("X-Signature %q, want %q (openssl)", got, want)
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"id":"evt-1"}`)
	oldSecret, newSecret := "whsec_"+base64.StdEncoding.EncodeToString([]byte("the old key, 24 bytes lo")), "plain new secret"
	signed := func(ts time.Time, secrets ...string) http.Header {
		h := http.Header{}
		Sign(h, "evt-1", ts, body, secrets)
		return h
	}
	signedAt := func(unix int64, secrets ...string) http.Header { return signed(time.Unix(unix, 0), secrets...) }
	with := func(h http.Header, name, value string) http.Header {
		h = h.Clone()
		if value == "" {
			h.Del(name)
		} else {
			h.Set(name, value)
		}
		return h
	}
	good := signed(now, newSecret, oldSecret)
	cases := []struct {
		name    string
		h       http.Header
		body    []byte
		secrets []string
		wantErr string // "" for a delivery that verifies
	}{
		{"both secrets signed, receiver has the new", good, body, []string{newSecret}, ""},
		{"both secrets signed, receiver has the old", good, body, []string{oldSecret}, ""},
		{"old secret signed, receiver has both", signed(now, oldSecret), body, []string{newSecret, oldSecret}, ""},
		{"other secret", signed(now, "someone else"), body, []string{newSecret, oldSecret}, "no v1 signature"},
		{"tampered body", good, []byte(`{"id":"evt-2"}`), []string{newSecret}, "no v1 signature"},
		{"tampered id", with(good, "webhook-id", "evt-2"), body, []string{newSecret}, "no v1 signature"},
		{"tampered timestamp", with(good, "webhook-timestamp", strconv.FormatInt(now.Unix()+1, 10)), body, []string{newSecret}, "no v1 signature"},
		{"at the tolerance", signed(now.Add(-tolerance), newSecret), body, []string{newSecret}, ""},
		{"stale", signed(now.Add(-tolerance-time.Second), newSecret), body, []string{newSecret}, "older than the tolerance"},
		{"future", signed(now.Add(tolerance+time.Second), newSecret), body, []string{newSecret}, "in the future"},
		{"centuries ahead", signedAt(1<<40, newSecret), body, []string{newSecret}, "in the future"},
		{"centuries ago", signedAt(-(1 << 40), newSecret), body, []string{newSecret}, "older than the tolerance"},
		{"timestamp not a number", with(good, "webhook-timestamp", "2023-11-14T22:13:20Z"), body, []string{newSecret}, "not Unix seconds"},
		{"missing id", with(good, "webhook-id", ""), body, []string{newSecret}, "missing webhook-id"},
		{"missing timestamp", with(good, "webhook-timestamp", ""), body, []string{newSecret}, "missing webhook-timestamp"},
		{"missing signature", with(good, "webhook-signature", ""), body, []string{newSecret}, "missing webhook-signature"},
		{"only another scheme", with(good, "webhook-signature", "v1a,"+base64.StdEncoding.EncodeToString(make([]byte, 64))), body, []string{newSecret}, "no v1 signature"},
		{"signature not base64", with(good, "webhook-signature", "v1,!!!"), body, []string{newSecret}, "no v1 signature"},
		{"no secrets", good, body, nil, "no secret"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(c.h, c.body, c.secrets, now, tolerance)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("Verify: %v, want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("Verify: %v, want an error saying %q", err, c.wantErr)
			}
		})
	}
}

// A signature list split over several header lines is still one list.
func TestVerifySignatureLines(t *testing.T) {
	now := time.Unix(1700000000, 0)
	h := http.Header{}
	Sign(h, "evt-1", now, []byte("{}"), []string{"a", "b"})
	sigs := strings.Fields(h.Get("webhook-signature"))
	h.Del("webhook-signature")
	h.Add("webhook-signature", sigs[0])
	h.Add("webhook-signature", sigs[1])
	if err := Verify(h, []byte("{}"), []string{"b"}, now, tolerance); err != nil {
		t.Fatal(err)
	}
}

func TestCheckSecret(t *testing.T) {
	for s, ok := range map[string]bool{
		vectorSecret:     true,
		"any string":     true,
		"":               false,
		"whsec_":         false,
		"whsec_not b64!": false,
	} {
		if err := CheckSecret(s); (err == nil) != ok {
			t.Errorf("CheckSecret(%q) = %v", s, err)
		}
	}
}
