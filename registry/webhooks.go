package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/oci"
)

// The webhook endpoints of the admin API, /admin/v1/webhooks/….
const (
	adWebhooks   = "webhooks"
	adWebhook    = "webhook"
	adDeliveries = "deliveries"
	adDelivery   = "delivery"
	adRedeliver  = "redeliver"
	adPing       = "ping"
	adEnable     = "enable"
)

const codeWebhookUnknown = "WEBHOOK_UNKNOWN"

// parseWebhookRoute splits the part of an admin path after "webhooks".
func parseWebhookRoute(rest string) (adminRoute, bool) {
	if rest == "" {
		return adminRoute{endpoint: adWebhooks}, true
	}
	seg := strings.Split(rest, "/")
	rt := adminRoute{name: seg[0]}
	switch {
	case len(seg) == 1:
		rt.endpoint = adWebhook
	case len(seg) == 2 && (seg[1] == adDeliveries || seg[1] == adPing || seg[1] == adEnable):
		rt.endpoint = seg[1]
	case len(seg) == 3 && seg[1] == adDeliveries:
		rt.endpoint, rt.tag = adDelivery, seg[2]
	case len(seg) == 4 && seg[1] == adDeliveries && seg[3] == adRedeliver:
		rt.endpoint, rt.tag = adRedeliver, seg[2]
	default:
		return adminRoute{}, false
	}
	return rt, true
}

// webhookJSON is a webhook on the wire: its endpoint without the secrets,
// which are write-only, and its state.
type webhookJSON struct {
	notify.Endpoint
	Secrets        int        `json:"secrets"` // how many; their values are never shown
	Source         string     `json:"source"`
	Created        time.Time  `json:"createdAt"`
	Updated        time.Time  `json:"updatedAt"`
	Disabled       *time.Time `json:"disabledAt,omitempty"`
	DisabledReason string     `json:"disabledReason,omitempty"`
	Failures       int64      `json:"consecutiveFailures"`
	PausedUntil    *time.Time `json:"pausedUntil,omitempty"`
}

func toWebhookJSON(w metadata.Webhook) (webhookJSON, error) {
	var ep notify.Endpoint
	if err := json.Unmarshal([]byte(w.Body), &ep); err != nil {
		return webhookJSON{}, err
	}
	out := webhookJSON{Endpoint: ep, Secrets: len(ep.Secrets), Source: w.Source, Created: jsonTime(w.Created),
		Updated: jsonTime(w.Updated), Disabled: jsonTimePtr(w.Disabled), DisabledReason: w.DisabledReason, Failures: w.Failures}
	if w.PausedUntil > time.Now().UnixNano() {
		out.PausedUntil = jsonTimePtr(w.PausedUntil)
	}
	return out, nil
}

func webhookUnknown(name string) *apiError {
	e := newError(http.StatusNotFound, codeWebhookUnknown, "no webhook is named "+name)
	e.Detail = map[string]string{"name": name}
	return e
}

// getWebhookRecord returns a stored webhook, or WEBHOOK_UNKNOWN.
func (reg *Registry) getWebhookRecord(r *http.Request, name string) (metadata.Webhook, error) {
	w, err := reg.db.GetWebhook(r.Context(), name)
	if errors.Is(err, metadata.ErrNotFound) {
		return w, webhookUnknown(name)
	}
	return w, err
}

// listWebhooks lists every webhook.
//
// GET /admin/v1/webhooks
func (reg *Registry) listWebhooks(w http.ResponseWriter, r *http.Request, _ adminRoute) error {
	hooks, err := reg.db.Webhooks(r.Context())
	if err != nil {
		return err
	}
	out := make([]webhookJSON, len(hooks))
	for i, h := range hooks {
		if out[i], err = toWebhookJSON(h); err != nil {
			return err
		}
	}
	return writeJSON(w, "application/json", struct {
		Webhooks []webhookJSON `json:"webhooks"`
	}{out})
}

// getWebhook describes one webhook.
//
// GET /admin/v1/webhooks/<name>
func (reg *Registry) getWebhook(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	h, err := reg.getWebhookRecord(r, rt.name)
	if err != nil {
		return err
	}
	out, err := toWebhookJSON(h)
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", out)
}

// putWebhook creates or replaces a webhook defined through the API (POST
// to the collection creates, and refuses a name in use). Secrets are
// write-only: a replacement without secrets keeps the stored ones.
//
// POST /admin/v1/webhooks, PUT /admin/v1/webhooks/<name>
func (reg *Registry) putWebhook(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	var ep notify.Endpoint
	if err := readBody(r, &ep); err != nil {
		return err
	}
	creating := rt.endpoint == adWebhooks
	if !creating {
		if ep.Name != "" && ep.Name != rt.name {
			return newError(http.StatusBadRequest, codeRequestInvalid, "the body names another webhook than the path")
		}
		ep.Name = rt.name
	}
	if err := validWebhookName(ep.Name); err != nil {
		return err
	}
	err := reg.db.InTx(r.Context(), func(tx *metadata.Tx) error {
		old, err := tx.Webhook(r.Context(), ep.Name) // locked: secrets kept are the ones replaced
		switch {
		case errors.Is(err, metadata.ErrNotFound):
		case err != nil:
			return err
		case creating:
			return newError(http.StatusConflict, codeWebhookConflict, "a webhook is already named "+ep.Name)
		case old.Source != "api":
			return newError(http.StatusConflict, codeWebhookConflict, "webhook "+ep.Name+" comes from the configuration file; change it there")
		case len(ep.Secrets) == 0:
			var prev notify.Endpoint
			if err := json.Unmarshal([]byte(old.Body), &prev); err != nil {
				return err
			}
			ep.Secrets = prev.Secrets
		}
		if err := ep.Validate(); err != nil {
			return newError(http.StatusBadRequest, codeWebhookInvalid, err.Error())
		}
		body, err := json.Marshal(ep)
		if err != nil {
			return err
		}
		if creating {
			// Another create of the name may have committed since the read.
			created, err := tx.CreateWebhook(r.Context(), ep.Name, string(body), "api")
			if err == nil && !created {
				err = newError(http.StatusConflict, codeWebhookConflict, "a webhook is already named "+ep.Name)
			}
			return err
		}
		return tx.PutWebhook(r.Context(), ep.Name, string(body), "api")
	})
	if err != nil {
		return err
	}
	reg.log.Info("webhook set", "name", ep.Name, "url", ep.URL, "actor", actor(r))
	return reg.getWebhook(w, r, adminRoute{name: ep.Name})
}

// validWebhookName: names are path segments.
func validWebhookName(name string) error {
	if name == "" || len(name) > 128 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" ||
		strings.Trim(name, ".") == "" {
		return newError(http.StatusBadRequest, codeWebhookInvalid, "a webhook name is 1 to 128 letters, digits, '-', '_' or '.', not only dots")
	}
	return nil
}

// deleteWebhook removes a webhook defined through the API, with its
// deliveries.
//
// DELETE /admin/v1/webhooks/<name>
func (reg *Registry) deleteWebhook(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	h, err := reg.getWebhookRecord(r, rt.name)
	if err != nil {
		return err
	}
	if h.Source != "api" {
		return newError(http.StatusConflict, codeWebhookConflict, "webhook "+rt.name+" comes from the configuration file; remove it there")
	}
	if err := reg.db.InTx(r.Context(), func(tx *metadata.Tx) error { return tx.DeleteWebhook(r.Context(), rt.name) }); err != nil {
		return err
	}
	reg.log.Info("webhook deleted", "name", rt.name, "actor", actor(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// enableWebhook enables a disabled or paused webhook again.
//
// POST /admin/v1/webhooks/<name>/enable
func (reg *Registry) enableWebhook(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	err := reg.db.InTx(r.Context(), func(tx *metadata.Tx) error {
		return tx.SetWebhookEnabled(r.Context(), rt.name, true, "")
	})
	if errors.Is(err, metadata.ErrNotFound) {
		return webhookUnknown(rt.name)
	}
	if err != nil {
		return err
	}
	return reg.getWebhook(w, r, rt)
}

// deliveryJSON is a delivery on the wire.
type deliveryJSON struct {
	ID         int64         `json:"id"`
	Event      eventJSONOut  `json:"event"`
	State      string        `json:"state"`
	Attempts   int64         `json:"attempts"`
	LastStatus int64         `json:"lastStatus,omitempty"`
	Created    time.Time     `json:"createdAt"`
	NextAt     *time.Time    `json:"nextAttemptAt,omitempty"`
	Done       *time.Time    `json:"doneAt,omitempty"`
	Log        []attemptJSON `json:"log,omitempty"`
}

type attemptJSON struct {
	Attempt  int64     `json:"attempt"`
	At       time.Time `json:"at"`
	Status   int64     `json:"status"`
	Latency  string    `json:"latency"`
	Response string    `json:"response"`
}

// eventJSONOut is an outbox event on the wire, its time as text.
type eventJSONOut struct {
	ID         string     `json:"id"`
	Time       time.Time  `json:"time"`
	Action     string     `json:"action"`
	Repository string     `json:"repository"`
	Tag        string     `json:"tag,omitempty"`
	Digest     oci.Digest `json:"digest"`
	Previous   oci.Digest `json:"previous,omitempty"`
	MediaType  string     `json:"mediaType"`
	Size       int64      `json:"size"`
	Numbered   bool       `json:"numbered,omitempty"`
	Newest     bool       `json:"newest,omitempty"`
	Actor      string     `json:"actor,omitempty"`
}

func toDeliveryJSON(d metadata.Delivery) deliveryJSON {
	e := d.Event
	ev := eventJSONOut{e.ID, jsonTime(e.Time), e.Action, e.Repository, e.Tag, e.Digest, e.Previous, e.MediaType, e.Size,
		e.Numbered, e.Newest, e.Actor}
	out := deliveryJSON{ID: d.ID, Event: ev, State: d.State, Attempts: d.Attempts, LastStatus: d.LastStatus,
		Created: jsonTime(d.Created), Done: jsonTimePtr(d.Done)}
	if d.State == metadata.DeliveryPending && d.NextAt != math.MaxInt64 { // queued behind another: no time yet
		out.NextAt = jsonTimePtr(d.NextAt)
	}
	return out
}

// listDeliveries lists a webhook's deliveries, newest first.
//
// GET /admin/v1/webhooks/<name>/deliveries?limit=&cursor=
func (reg *Registry) listDeliveries(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	if _, err := reg.getWebhookRecord(r, rt.name); err != nil {
		return err
	}
	n, before, err := idPage(r)
	if err != nil {
		return err
	}
	rows, err := reg.db.Deliveries(r.Context(), rt.name, before, n+1)
	if err != nil {
		return err
	}
	rows, next := trimPage(w, r, rows, n, func(d metadata.Delivery) string { return strconv.FormatInt(d.ID, 10) })
	out := make([]deliveryJSON, len(rows))
	for i, d := range rows {
		out[i] = toDeliveryJSON(d)
	}
	return writeJSON(w, "application/json", struct {
		Webhook    string         `json:"webhook"`
		Deliveries []deliveryJSON `json:"deliveries"`
		Next       string         `json:"next,omitempty"`
	}{rt.name, out, next})
}

// deliveryID reads the delivery id of a route, whose webhook must exist.
func (reg *Registry) deliveryID(r *http.Request, rt adminRoute) (int64, error) {
	if _, err := reg.getWebhookRecord(r, rt.name); err != nil {
		return 0, err
	}
	id, err := strconv.ParseInt(rt.tag, 10, 64)
	if err != nil || id < 1 {
		return 0, deliveryUnknown(rt.name, rt.tag)
	}
	return id, nil
}

func deliveryUnknown(webhook, id string) *apiError {
	return newError(http.StatusNotFound, codeDeliveryUnknown, fmt.Sprintf("webhook %s has no delivery %s", webhook, id))
}

// getDelivery describes a delivery with the log of its attempts.
//
// GET /admin/v1/webhooks/<name>/deliveries/<id>
func (reg *Registry) getDelivery(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	id, err := reg.deliveryID(r, rt)
	if err != nil {
		return err
	}
	rows, err := reg.db.Deliveries(r.Context(), rt.name, id+1, 1)
	if err != nil {
		return err
	}
	if len(rows) == 0 || rows[0].ID != id {
		return deliveryUnknown(rt.name, strconv.FormatInt(id, 10))
	}
	attempts, err := reg.db.Attempts(r.Context(), rt.name, id)
	if err != nil {
		return err
	}
	out := toDeliveryJSON(rows[0])
	for _, a := range attempts {
		out.Log = append(out.Log, attemptJSON{a.Number, jsonTime(a.At), a.Status, a.Latency.String(), a.Response})
	}
	return writeJSON(w, "application/json", out)
}

// redeliver makes a delivery pending again, due now, whatever became of it
// (a dead letter, or one delivered that the receiver lost).
//
// POST /admin/v1/webhooks/<name>/deliveries/<id>/redeliver
func (reg *Registry) redeliver(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	id, err := reg.deliveryID(r, rt)
	if err != nil {
		return err
	}
	err = reg.db.InTx(r.Context(), func(tx *metadata.Tx) error { return tx.Redeliver(r.Context(), rt.name, id) })
	if errors.Is(err, metadata.ErrNotFound) {
		return deliveryUnknown(rt.name, strconv.FormatInt(id, 10))
	}
	if err != nil {
		return err
	}
	reg.log.Info("webhook delivery redelivered", "name", rt.name, "delivery", id, "actor", actor(r))
	return reg.getDelivery(w, r, rt)
}

// ping sends the webhook a signed test event now, outside the outbox: a
// push of the tag "ping" to the repository "berth/ping", which no real
// repository has. It answers what the receiver answered.
//
// POST /admin/v1/webhooks/<name>/ping
func (reg *Registry) ping(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	if _, err := reg.getWebhookRecord(r, rt.name); err != nil {
		return err
	}
	if reg.dispatcher == nil {
		return newError(http.StatusNotImplemented, codeUnsupported, "webhooks are not dispatched by this server")
	}
	payload := []byte(`{"schemaVersion":2}`)
	e := metadata.Event{ID: "ping_" + strconv.FormatInt(time.Now().UnixNano(), 36), Time: time.Now().UnixNano(),
		Action: metadata.ActionPush, Repository: "berth/ping", Tag: "ping", Digest: oci.FromBytes(payload),
		MediaType: oci.MediaTypeImageManifest, Size: int64(len(payload)), Actor: actor(r)}
	status, answer, err := reg.dispatcher.Ping(r.Context(), rt.name, e)
	out := struct {
		Event    string `json:"event"`
		Status   int    `json:"status,omitempty"`
		Response string `json:"response,omitempty"`
		Error    string `json:"error,omitempty"`
	}{e.ID, status, answer, ""}
	if err != nil {
		out.Error = err.Error()
	}
	return writeJSON(w, "application/json", out)
}
