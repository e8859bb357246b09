package test

// The admin API's documents (/admin/v1, and the CLI's --json, which prints the same), as far as
// the suites read them: one set for every suite.

import (
	"fmt"
	"strings"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// Repositories and tags.

// version is one numbered tag in /versions.
type version struct {
	Tag      string    `json:"tag"`
	Digest   string    `json:"digest"`
	PushedAt time.Time `json:"pushedAt"`
	Newest   bool      `json:"newest"`
}

// tagState is one tag in /tags.
type tagState struct {
	Tag             string    `json:"tag"`
	Digest          string    `json:"digest"`
	Start           time.Time `json:"start"`
	End             time.Time `json:"end"`
	Numbered        bool      `json:"numbered"`
	Rank            int       `json:"rank"`
	RestorableUntil time.Time `json:"restorableUntil"`
}

// tagChange is the answer to a change of a tag: PUT, DELETE, restore, rollback.
type tagChange struct {
	Repository string `json:"repository"`
	Mode       string `json:"mode"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
	Previous   string `json:"previous"`
}

// effectivePolicy is the part of a repository's effective policy the tests check.
type effectivePolicy struct {
	ImmutableNumbered *bool `json:"immutableNumbered"`
	RefuseLower       *bool `json:"refuseLower"`
	Retention         *struct {
		KeepNewest *int `json:"keepNewest"`
	} `json:"retention"`
}

// event is one row of a tag's history: where the tag pointed from Start to End (zero while live).
type event struct {
	ID        int64     `json:"id"`
	Tag       string    `json:"tag"`
	Digest    string    `json:"digest"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	EndedBy   string    `json:"endedBy"`
	EndAction string    `json:"endAction"`
}

func (e event) String() string {
	end := "live"
	if !e.End.IsZero() {
		end = e.End.Format(time.RFC3339Nano) + " by " + e.EndAction
	}
	return fmt.Sprintf("#%d %s→%s %s since %s until %s", e.ID, e.Tag, e.Digest, e.Action, e.Start.Format(time.RFC3339Nano), end)
}

func eventLines(events []event) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// Webhooks.

// hookState is a webhook as the admin API shows it.
type hookState struct {
	Name           string     `json:"name"`
	URL            string     `json:"url"`
	Format         string     `json:"format"`
	Secrets        int        `json:"secrets"`
	Repositories   []string   `json:"repositories"`
	Source         string     `json:"source"`
	Created        time.Time  `json:"createdAt"`
	Updated        time.Time  `json:"updatedAt"`
	Disabled       *time.Time `json:"disabledAt"`
	DisabledReason string     `json:"disabledReason"`
	Failures       int64      `json:"consecutiveFailures"`
	PausedUntil    *time.Time `json:"pausedUntil"`
}

// hookDelivery is a delivery as the admin API shows it; Log only when read alone.
type hookDelivery struct {
	ID         int64         `json:"id"`
	Event      hookEvent     `json:"event"`
	State      string        `json:"state"`
	Attempts   int64         `json:"attempts"`
	LastStatus int64         `json:"lastStatus"`
	Created    time.Time     `json:"createdAt"`
	NextAt     *time.Time    `json:"nextAttemptAt"`
	Done       *time.Time    `json:"doneAt"`
	Log        []hookAttempt `json:"log"`
}

// hookEvent is an outbox event as the admin API shows it, its time as text.
type hookEvent struct {
	ID         string     `json:"id"`
	Time       time.Time  `json:"time"`
	Action     string     `json:"action"`
	Repository string     `json:"repository"`
	Tag        string     `json:"tag"`
	Digest     oci.Digest `json:"digest"`
	Previous   oci.Digest `json:"previous"`
	MediaType  string     `json:"mediaType"`
	Size       int64      `json:"size"`
	Numbered   bool       `json:"numbered"`
	Newest     bool       `json:"newest"`
	Actor      string     `json:"actor"`
}

// meta is the event as committed, for notify.Encode.
func (e hookEvent) meta() metadata.Event {
	return metadata.Event{ID: e.ID, Time: e.Time.UnixNano(), Action: e.Action, Repository: e.Repository, Tag: e.Tag,
		Digest: e.Digest, Previous: e.Previous, MediaType: e.MediaType, Size: e.Size, Numbered: e.Numbered,
		Newest: e.Newest, Actor: e.Actor}
}

// hookAttempt is one attempt in a delivery's log.
type hookAttempt struct {
	Attempt  int64     `json:"attempt"`
	At       time.Time `json:"at"`
	Status   int64     `json:"status"`
	Latency  string    `json:"latency"`
	Response string    `json:"response"`
}

func (d hookDelivery) logLines() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  delivery %d of event %s: %s after %d attempts\n", d.ID, d.Event.ID, d.State, d.Attempts)
	for _, a := range d.Log {
		fmt.Fprintf(&b, "  attempt %d at %s: %d in %s %q\n", a.Attempt, a.At.Format(time.RFC3339Nano), a.Status, a.Latency, a.Response)
	}
	return b.String()
}

// successfulAttempts counts the attempts answered 2xx.
func (d hookDelivery) successfulAttempts() int {
	n := 0
	for _, a := range d.Log {
		if a.Status >= 200 && a.Status < 300 {
			n++
		}
	}
	return n
}
