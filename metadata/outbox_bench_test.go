package metadata_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
)

// BenchmarkClaimBacklog measures a claim while one endpoint has a long
// line of pending deliveries behind a head that is not due (its receiver
// is failing), and another endpoint has one due delivery: what every push
// pays on SQLite, where a claim is a write transaction, while a receiver is
// down.
func BenchmarkClaimBacklog(b *testing.B) {
	for _, backlog := range []int{100, 20000} {
		b.Run(fmt.Sprint(backlog), func(b *testing.B) {
			c := newClock()
			db := openWith(b, backends[0].fresh(b), c)
			layer := newBlob("layer")
			ctx := context.Background()
			err := db.InTx(ctx, func(tx *metadata.Tx) error {
				for _, name := range []string{"down", "up"} {
					if err := tx.PutWebhook(ctx, name, "{}", "api"); err != nil {
						return err
					}
				}
				if _, err := tx.EnsureRepository(ctx, "app"); err != nil {
					return err
				}
				for range backlog {
					e := metadata.Event{Action: metadata.ActionBlobPull, Repository: "app", Digest: layer.digest}
					if err := tx.WriteEvent(ctx, e, []string{"down"}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			// The head of "down" fails and waits an hour.
			head, err := db.ClaimDeliveries(ctx, time.Minute, 1)
			if err != nil || len(head) != 1 {
				b.Fatal(head, err)
			}
			if _, err := db.RecordAttempt(ctx, head[0], metadata.Attempt{Status: 503},
				metadata.Outcome{State: metadata.DeliveryPending, NextAt: c.Now().Add(time.Hour).UnixNano()}); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := db.ClaimDeliveries(ctx, time.Minute, 16); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
