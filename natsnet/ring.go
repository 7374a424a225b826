package natsnet

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
)

// Ring is one rank's allreduce.Transport over NATS: it receives on
// klring.<job>.ring.<epoch>.<rank> and publishes to the same subject of the
// destination rank. Make it when the membership epoch starts, before any
// rank of the ring sends, and close it when the epoch ends.
type Ring struct {
	conn   *Conn
	sub    *nats.Subscription
	prefix string // klring.<job>.ring.<epoch>.
	to     int
	toSubj string
}

// Ring subscribes to rank's subject of job's ring in epoch and waits until
// the server has registered the subscription (so that messages sent after
// Ring returns reach it). The subscription holds at most the connection's
// PendingLimits.
func (c *Conn) Ring(ctx context.Context, job string, epoch uint64, rank int) (*Ring, error) {
	if err := allreduce.ValidJob(job); err != nil {
		return nil, err
	}
	if rank < 0 {
		panic(fmt.Sprintf("natsnet: rank %d", rank))
	}
	prefix := "klring." + job + ".ring." + strconv.FormatUint(epoch, 10) + "."
	sub, err := c.NC.SubscribeSync(prefix + strconv.Itoa(rank))
	if err != nil {
		return nil, fmt.Errorf("natsnet: subscribing to %s%d: %w", prefix, rank, err)
	}
	msgs, bytes := c.PendingLimits()
	if err := sub.SetPendingLimits(msgs, bytes); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("natsnet: pending limits of %s: %w", sub.Subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*c.opts.PingInterval)
		defer cancel()
	}
	if err := c.NC.FlushWithContext(ctx); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("natsnet: subscribing to %s: %w", sub.Subject, err)
	}
	return &Ring{conn: c, sub: sub, prefix: prefix, to: -1}, nil
}

// Send publishes msg to rank to. nats.go copies msg into its write buffer
// and flushes it from its own goroutine.
func (r *Ring) Send(_ context.Context, to int, msg []byte) error {
	if to != r.to {
		r.to, r.toSubj = to, r.prefix+strconv.Itoa(to)
	}
	if err := r.conn.NC.Publish(r.toSubj, msg); err != nil {
		return closedErr(err)
	}
	return nil
}

// Recv waits for the next message addressed to this rank.
func (r *Ring) Recv(ctx context.Context) ([]byte, error) {
	m, err := r.sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, closedErr(err)
	}
	return m.Data, nil
}

// Dropped is the number of messages nats.go dropped from this subscription
// because its pending limits were exceeded (allreduce puts it in its abort
// errors).
func (r *Ring) Dropped() int {
	n, err := r.sub.Dropped()
	if err != nil {
		return 0
	}
	return n
}

// Close unsubscribes. It may be called more than once.
func (r *Ring) Close() error {
	err := r.sub.Unsubscribe()
	if err != nil && !errors.Is(err, nats.ErrBadSubscription) && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsnet: unsubscribing %s: %w", r.sub.Subject, err)
	}
	return nil
}

func closedErr(err error) error {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("%w: %w", allreduce.ErrClosed, err)
	}
	return err
}
