package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// A node name is held by one process at a time: the row of nodes names
// the holding instance and the end of its lease, renewed every third of
// the lease. Every statement that takes the row checks the lease in the
// same statement, so two processes never hold one name at once whatever
// their timing: the row lock orders a renewal and a takeover, and the
// later one sees what the earlier one wrote.
//
// A process starting under a name that another holds waits: if the
// holder renews (it is alive), the start fails with an error naming it;
// if the holder's lease runs out first (it died), the name is taken over.
// Refusing at once would also refuse the common restart after a crash,
// which must only wait out the dead process's lease; waiting for a
// renewal tells the two apart within a third of the lease.

// describe names a holder in messages.
func describe(h store.Instance) string {
	return fmt.Sprintf("instance %s on host %s (pid %d), started %s", h.Instance, h.Host, h.PID, h.Started.Format(time.RFC3339))
}

// joinPoll is how often a starting process looks at the holder of its
// node name while it waits.
func (s *Store) joinPoll() time.Duration { return min(time.Second, s.lease/10) }

// join takes the node name for this process (see above). ctx bounds the
// wait; the caller gives it at least the lease.
func (s *Store) join(ctx context.Context) error {
	var first *store.Instance
	for {
		s.lastBeat = time.Now()
		h, err := s.takeName(ctx)
		if err != nil {
			return fmt.Errorf("taking node name %q: %w", s.node, err)
		}
		if h == nil {
			if first != nil {
				s.log.Info("node name taken over from a process whose lease ran out", "previous", first.Instance,
					"previous_host", first.Host, "previous_pid", first.PID)
			}
			return nil
		}
		switch {
		case first == nil:
			first = h
			s.log.Warn("node name held by another process: waiting until its lease runs out, or it renews it (then this start fails)",
				"holder", h.Instance, "holder_host", h.Host, "holder_pid", h.PID, "lease_until", h.Expires.Format(time.RFC3339Nano))
		case h.Instance != first.Instance || h.Expires.After(first.Expires):
			return fmt.Errorf("node name %q is held by a running postoffice: %s, lease renewed at %s until %s; each node needs its own [store] node_name (or stop that process)",
				s.node, describe(*h), h.Renewed.Format(time.RFC3339), h.Expires.Format(time.RFC3339))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node name %q is held by %s, lease until %s: %w", s.node, describe(*h), h.Expires.Format(time.RFC3339), ctx.Err())
		case <-time.After(s.joinPoll()):
		}
	}
}

// takeName takes the node name row for this instance if it is free, run
// out or already this instance's; otherwise it returns its holder.
func (s *Store) takeName(ctx context.Context) (*store.Instance, error) {
	host, _ := os.Hostname()
	var got string
	err := s.pool.QueryRow(ctx, `INSERT INTO nodes (node, instance, host, pid, started_at, renewed_at, expires_at)
		VALUES ($1, $2, $3, $4, now(), now(), now() + $5 * interval '1 millisecond')
		ON CONFLICT (node) DO UPDATE SET instance = EXCLUDED.instance, host = EXCLUDED.host, pid = EXCLUDED.pid,
			started_at = CASE WHEN nodes.instance = EXCLUDED.instance THEN nodes.started_at ELSE EXCLUDED.started_at END,
			renewed_at = EXCLUDED.renewed_at, expires_at = EXCLUDED.expires_at
		WHERE nodes.expires_at <= now() OR nodes.instance = EXCLUDED.instance
		RETURNING instance`, s.node, s.instance, host, os.Getpid(), s.lease.Milliseconds()).Scan(&got)
	if err == nil {
		return nil, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	h, err := s.holder(ctx)
	if errors.Is(err, pgx.ErrNoRows) {
		// Released between the two statements: try again.
		return s.takeName(ctx)
	}
	return h, err
}

// holder reads the row of this store's node name.
func (s *Store) holder(ctx context.Context) (*store.Instance, error) {
	hs, err := s.instances(ctx, `WHERE node = $1`, s.node)
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		return nil, pgx.ErrNoRows
	}
	return &hs[0], nil
}

// heartbeat renews this instance's lease on its node name. Should the row
// be another instance's now (this process was cut off from the database
// for longer than the lease and another took the name), Lost is closed.
// Should it have run out with no one taking it, the name is held again.
func (s *Store) heartbeat(ctx context.Context) error {
	if s.LostErr() != nil {
		return nil
	}
	sent := time.Now()
	tag, err := s.pool.Exec(ctx, `UPDATE nodes SET renewed_at = now(), expires_at = now() + $3 * interval '1 millisecond'
		WHERE node = $1 AND instance = $2`, s.node, s.instance, s.lease.Milliseconds())
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 1 {
		if gap := sent.Sub(s.lastBeat); gap > s.lease {
			s.log.Warn("the node's lease had run out (the database was out of reach): other nodes may have taken this process's queue claims",
				"since_last_renewal", gap.Round(time.Millisecond))
		}
		s.lastBeat = sent
		_, err = s.pool.Exec(ctx, `DELETE FROM nodes WHERE expires_at < now() - interval '1 day'`)
		return err
	}
	h, err := s.takeName(ctx)
	if err != nil {
		return err
	}
	if h == nil {
		s.log.Warn("node name held again: its row had been removed")
		s.lastBeat = sent
		return nil
	}
	s.setLost(fmt.Errorf("node name %q was taken over by %s while this process could not renew its lease", s.node, describe(*h)))
	s.log.Error("this process no longer holds its node name: it must stop", "err", s.lostErr)
	return nil
}

func (s *Store) setLost(err error) {
	s.lostOnce.Do(func() {
		s.lostErr = err
		close(s.lost)
	})
}

// Instances lists the processes holding node names, by node name, and
// those whose lease ran out in the last day (Alive false).
func (s *Store) Instances(ctx context.Context) ([]store.Instance, error) {
	return s.instances(ctx, `ORDER BY node`)
}

func (s *Store) instances(ctx context.Context, where string, args ...any) ([]store.Instance, error) {
	rows, err := s.pool.Query(ctx, `SELECT node, instance, host, pid, started_at, renewed_at, expires_at, expires_at > now()
		FROM nodes `+where, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Instance, error) {
		var n store.Instance
		err := r.Scan(&n.Node, &n.Instance, &n.Host, &n.PID, &n.Started, &n.Renewed, &n.Expires, &n.Alive)
		n.Started, n.Renewed, n.Expires = n.Started.UTC(), n.Renewed.UTC(), n.Expires.UTC()
		return n, err
	})
}
