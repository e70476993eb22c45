package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// store.Shared: ACME state and the server's secrets, which every node
// reads from the database. Any process may use them (not only the node's
// live instance): the ACME lock is a lease of its own.

// ACMEStorage implements store.Shared.
func (s *Store) ACMEStorage() acmecert.Storage { return acmeStorage{s} }

// acmeStorage is acmecert.Storage over the acme_values and acme_locks
// tables; lock leases are measured by the database's clock, which every
// node shares.
type acmeStorage struct{ s *Store }

var _ acmecert.Storage = acmeStorage{}

func (a acmeStorage) Get(ctx context.Context, name string) ([]byte, error) {
	var data []byte
	err := a.s.pool.QueryRow(ctx, `SELECT data FROM acme_values WHERE name = $1`, name).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, acmecert.ErrNotFound
	}
	if data == nil && err == nil {
		data = []byte{}
	}
	return data, err
}

func (a acmeStorage) Put(ctx context.Context, name string, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	_, err := a.s.pool.Exec(ctx, `INSERT INTO acme_values (name, data, updated_at) VALUES ($1, $2, now())
		ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at`, name, data)
	return err
}

func (a acmeStorage) Delete(ctx context.Context, name string) error {
	_, err := a.s.pool.Exec(ctx, `DELETE FROM acme_values WHERE name = $1`, name)
	return err
}

// TryLock takes the lock in one statement: inserted if absent, taken over
// only if held by holder already or run out; the row lock of ON CONFLICT
// orders nodes that try at once, and the later one sees the earlier one's
// lease.
func (a acmeStorage) TryLock(ctx context.Context, name, holder string, lease time.Duration) (bool, error) {
	if holder == "" || lease <= 0 {
		return false, fmt.Errorf("TryLock needs a holder and a positive lease: %w", store.ErrInvalid)
	}
	var got string
	err := a.s.pool.QueryRow(ctx, `INSERT INTO acme_locks (name, holder, expires_at)
		VALUES ($1, $2, now() + $3 * interval '1 millisecond')
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
		WHERE acme_locks.holder = EXCLUDED.holder OR acme_locks.expires_at <= now()
		RETURNING holder`, name, holder, lease.Milliseconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (a acmeStorage) Unlock(ctx context.Context, name, holder string) error {
	_, err := a.s.pool.Exec(ctx, `DELETE FROM acme_locks WHERE name = $1 AND holder = $2`, name, holder)
	return err
}

// Secret implements store.Shared. Two nodes creating it at once: the
// insert of the second waits for the first's commit and does nothing, and
// its next statement (a new snapshot) reads the first's value.
func (s *Store) Secret(ctx context.Context, purpose string) ([]byte, error) {
	if purpose == "" {
		return nil, fmt.Errorf("secret without a purpose: %w", store.ErrInvalid)
	}
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM secrets WHERE purpose = $1`, purpose).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	fresh := make([]byte, store.SecretSize)
	rand.Read(fresh) // never fails since Go 1.24
	if _, err := s.pool.Exec(ctx, `INSERT INTO secrets (purpose, value, created_at) VALUES ($1, $2, now()) ON CONFLICT DO NOTHING`, purpose, fresh); err != nil {
		return nil, err
	}
	err = s.pool.QueryRow(ctx, `SELECT value FROM secrets WHERE purpose = $1`, purpose).Scan(&v)
	return v, err
}

// ExportShared implements store.Exporter.
func (s *Store) ExportShared(ctx context.Context) ([]store.SharedValue, error) {
	rows, err := s.pool.Query(ctx, `SELECT 'acme', name, data FROM acme_values
		UNION ALL SELECT 'secret', purpose, value FROM secrets ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.SharedValue
	for rows.Next() {
		var v store.SharedValue
		if err := rows.Scan(&v.Kind, &v.Name, &v.Data); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ImportShared implements store.Importer.
func (s *Store) ImportShared(ctx context.Context, v store.SharedValue) (bool, error) {
	var q string
	switch v.Kind {
	case store.SharedACME:
		q = `INSERT INTO acme_values (name, data, updated_at) VALUES ($1, $2, now()) ON CONFLICT DO NOTHING`
	case store.SharedSecret:
		q = `INSERT INTO secrets (purpose, value, created_at) VALUES ($1, $2, now()) ON CONFLICT DO NOTHING`
	default:
		return false, fmt.Errorf("shared value of kind %q: %w", v.Kind, store.ErrInvalid)
	}
	data := v.Data
	if data == nil {
		data = []byte{}
	}
	tag, err := s.pool.Exec(ctx, q, v.Name, data)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}
