// Package notify announces registry events to webhook endpoints. It owns
// the endpoint model (Endpoint: where to deliver, in which format, with
// which secrets, and the filters that choose the events), the payload
// formats a delivery is written in (Encode: the reference registry's
// distribution envelope, Harbor's, and CloudEvents), the signing of
// deliveries, and their dispatch with retries.
//
// The events themselves are metadata.Event rows, written to the outbox in
// the transaction that makes the change; notify only reads them. Payloads
// describe the registry as clients see it (Registry: its public host and
// URL), never the address a process listens on.
package notify
