package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// store.Shared: ACME state and the server's secrets, in the database
// (owner-only, as the whole data directory: the blobs hold private keys).

// ACMEStorage implements store.Shared.
func (s *Store) ACMEStorage() acmecert.Storage { return acmeStorage{s} }

// acmeStorage is acmecert.Storage over the acme_values and acme_locks
// tables. Lock leases are measured by this machine's clock: the processes
// that open one SQLite database share it.
type acmeStorage struct{ s *Store }

var _ acmecert.Storage = acmeStorage{}

func (a acmeStorage) Get(ctx context.Context, name string) ([]byte, error) {
	var data []byte
	err := a.s.r.QueryRowContext(ctx, `SELECT data FROM acme_values WHERE name = ?`, name).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, acmecert.ErrNotFound
	}
	if data == nil && err == nil {
		data = []byte{} // an empty blob, not a missing one
	}
	return data, err
}

func (a acmeStorage) Put(ctx context.Context, name string, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	_, err := a.s.w.ExecContext(ctx, `INSERT INTO acme_values (name, data, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
		name, data, time.Now().Unix())
	return err
}

func (a acmeStorage) Delete(ctx context.Context, name string) error {
	_, err := a.s.w.ExecContext(ctx, `DELETE FROM acme_values WHERE name = ?`, name)
	return err
}

// TryLock takes the lock in one statement: inserted if absent, taken over
// only if held by holder already or run out.
func (a acmeStorage) TryLock(ctx context.Context, name, holder string, lease time.Duration) (bool, error) {
	if holder == "" || lease <= 0 {
		return false, fmt.Errorf("TryLock needs a holder and a positive lease: %w", store.ErrInvalid)
	}
	now := time.Now()
	res, err := a.s.w.ExecContext(ctx, `INSERT INTO acme_locks (name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE acme_locks.holder = excluded.holder OR acme_locks.expires_at <= ?`,
		name, holder, now.Add(lease).UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (a acmeStorage) Unlock(ctx context.Context, name, holder string) error {
	_, err := a.s.w.ExecContext(ctx, `DELETE FROM acme_locks WHERE name = ? AND holder = ?`, name, holder)
	return err
}

// Secret implements store.Shared.
func (s *Store) Secret(ctx context.Context, purpose string) ([]byte, error) {
	if purpose == "" {
		return nil, fmt.Errorf("secret without a purpose: %w", store.ErrInvalid)
	}
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT value FROM secrets WHERE purpose = ?`, purpose).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	fresh := make([]byte, store.SecretSize)
	rand.Read(fresh) // never fails since Go 1.24
	// Another process may create it meanwhile: the first one stays.
	err = s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (purpose, value, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			purpose, fresh, time.Now().Unix()); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM secrets WHERE purpose = ?`, purpose).Scan(&v)
	})
	return v, err
}

// ExportShared implements store.Exporter.
func (s *Store) ExportShared(ctx context.Context) ([]store.SharedValue, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT 'acme', name, data FROM acme_values
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
		q = `INSERT INTO acme_values (name, data, updated_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
	case store.SharedSecret:
		q = `INSERT INTO secrets (purpose, value, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
	default:
		return false, fmt.Errorf("shared value of kind %q: %w", v.Kind, store.ErrInvalid)
	}
	data := v.Data
	if data == nil {
		data = []byte{}
	}
	res, err := s.w.ExecContext(ctx, q, v.Name, data, time.Now().Unix())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
