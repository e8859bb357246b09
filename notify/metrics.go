package notify

import (
	"context"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the dispatcher's Prometheus metrics.
type metrics struct {
	attempts *prometheus.CounterVec   // by webhook and outcome
	latency  *prometheus.HistogramVec // of attempts that got an answer, by webhook
	pauses   *prometheus.CounterVec   // by webhook
}

// The outcomes of an attempt, as the metrics label them.
const (
	outcomeDelivered = "delivered"
	outcomeRetry     = "retry"
	outcomeDead      = "dead"
	outcomeDisabled  = "disabled"
)

// newMetrics registers the dispatcher's metrics with r: attempts by
// outcome, their latency, pauses, and the outbox's depth (read from the
// database at each scrape, so every replica reports the same).
func newMetrics(r prometheus.Registerer, db *metadata.DB) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_webhook_attempts_total",
			Help: "Webhook delivery attempts by this process, by webhook and outcome (delivered, retry, dead, disabled).",
		}, []string{"webhook", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_webhook_attempt_duration_seconds",
			Help:    "How long webhook delivery attempts took, by webhook.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8), // 5 ms to 82 s
		}, []string{"webhook"}),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_webhook_pauses_total",
			Help: "Times a webhook was paused after consecutive failures, by webhook.",
		}, []string{"webhook"}),
	}
	if r == nil {
		return m
	}
	pending := dbGauge("berth_webhook_pending_deliveries",
		"Webhook deliveries not yet delivered or dead-lettered (the outbox's depth), across replicas.", db.PendingDeliveries)
	dead := dbGauge("berth_webhook_dead_deliveries",
		"Webhook deliveries dead-lettered and not redelivered, across replicas.", db.DeadDeliveries)
	r.MustRegister(m.attempts, m.latency, m.pauses, pending, dead)
	return m
}

// dbGauge is a gauge read from the database at each scrape; -1 if the
// read fails.
func dbGauge(name, help string, count func(context.Context) (int64, error)) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := count(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
}

// observe counts an attempt.
func (m *metrics) observe(webhook string, status int, latency time.Duration, out metadata.Outcome) {
	outcome := outcomeRetry
	switch {
	case out.State == metadata.DeliveryDelivered:
		outcome = outcomeDelivered
	case out.Disable != "":
		outcome = outcomeDisabled
	case out.State == metadata.DeliveryDead:
		outcome = outcomeDead
	}
	m.attempts.WithLabelValues(webhook, outcome).Inc()
	if status != 0 {
		m.latency.WithLabelValues(webhook).Observe(latency.Seconds())
	}
}
