package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The delivery headers of Standard Webhooks (https://www.standardwebhooks.com),
// Flux's generic-hmac receiver, and the IETF idempotency key.
const (
	HeaderID             = "webhook-id"
	HeaderTimestamp      = "webhook-timestamp"
	HeaderSignature      = "webhook-signature"
	HeaderFluxSignature  = "X-Signature"
	HeaderIdempotencyKey = "Idempotency-Key"
)

// secretPrefix marks a Standard Webhooks secret: base64 of the key bytes.
const secretPrefix = "whsec_"

// Sign adds the delivery headers: webhook-id (= id), webhook-timestamp (unix seconds), webhook-signature
// ("v1,<base64 std HMAC-SHA256(key, id + "." + timestamp + "." + body)>", one per secret, space-separated),
// X-Signature ("sha256=<hex HMAC-SHA256(key of the first secret, body)>", Flux generic-hmac), Idempotency-Key (= id).
//
// Signing with every secret, newest first, lets a receiver move to a new
// secret without a window in which deliveries fail. Flux compares its token's
// bytes, so an endpoint read by Flux wants a first secret without whsec_.
func Sign(h http.Header, id string, ts time.Time, body []byte, secrets []string) {
	t := strconv.FormatInt(ts.Unix(), 10)
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, t)
	h.Set(HeaderIdempotencyKey, id)
	if len(secrets) == 0 {
		return
	}
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(signature(secretKey(s), id, t, body))
	}
	h.Set(HeaderSignature, strings.Join(sigs, " "))
	m := hmac.New(sha256.New, secretKey(secrets[0]))
	m.Write(body)
	h.Set(HeaderFluxSignature, "sha256="+hex.EncodeToString(m.Sum(nil)))
}

// Verify checks a delivery: webhook-id/timestamp/signature present, timestamp within tolerance of now (both
// directions), and one v1 signature matching one of secrets (constant-time compare). Errors say which check failed.
func Verify(h http.Header, body []byte, secrets []string, now time.Time, tolerance time.Duration) error {
	if len(secrets) == 0 {
		return errors.New("no secret to verify the delivery with")
	}
	id, ts := h.Get(HeaderID), h.Get(HeaderTimestamp)
	// Several header lines are one list, as if joined by spaces.
	sigs := strings.Fields(strings.Join(h.Values(HeaderSignature), " "))
	switch {
	case id == "":
		return fmt.Errorf("missing %s header", HeaderID)
	case ts == "":
		return fmt.Errorf("missing %s header", HeaderTimestamp)
	case len(sigs) == 0:
		return fmt.Errorf("missing %s header", HeaderSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%s %q is not Unix seconds", HeaderTimestamp, ts)
	}
	// The timestamp is signed, so a captured delivery can be replayed only
	// within the tolerance; the receiver's record of ids covers that window.
	// Compared in seconds, without subtracting the sender's value: a
	// time.Duration saturates centuries away, and its negation then passes.
	tol, unix := int64(tolerance/time.Second), now.Unix()
	if sec < unix-tol {
		return fmt.Errorf("%s %d is older than the tolerance of %s", HeaderTimestamp, sec, tolerance)
	} else if sec > unix+tol {
		return fmt.Errorf("%s %d is further in the future than the tolerance of %s", HeaderTimestamp, sec, tolerance)
	}
	want := make([][]byte, len(secrets))
	for i, s := range secrets {
		want[i] = signature(secretKey(s), id, ts, body)
	}
	for _, sig := range sigs {
		b64, ok := strings.CutPrefix(sig, "v1,")
		if !ok {
			continue // another scheme (v1a is asymmetric), which a sender may add
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		for _, w := range want {
			if hmac.Equal(got, w) {
				return nil
			}
		}
	}
	return fmt.Errorf("no v1 signature in %s matches a secret", HeaderSignature)
}

// CheckSecret reports a secret that cannot sign: an empty one, or a whsec_
// one whose rest is not base64.
func CheckSecret(s string) error {
	if s == "" {
		return errors.New("empty secret")
	}
	if rest, ok := strings.CutPrefix(s, secretPrefix); ok {
		k, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(k) == 0 {
			return fmt.Errorf("a %s secret must be followed by base64 of the key", secretPrefix)
		}
	}
	return nil
}

// secretKey is the HMAC key of a secret: the decoded bytes of "whsec_<base64>",
// else the secret's own bytes (CheckSecret rejects a whsec_ secret that does
// not decode, so the fallback only keeps Sign total).
func secretKey(s string) []byte {
	if rest, ok := strings.CutPrefix(s, secretPrefix); ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil && len(k) > 0 {
			return k
		}
	}
	return []byte(s)
}

// signature is the Standard Webhooks HMAC of id.timestamp.body.
func signature(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return m.Sum(nil)
}
