package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// mailauth.KeyStore: the DKIM keys in the dkim_keys table (owner-only,
// as the whole data directory: it holds private keys). Times are Unix
// seconds, retired_at 0 while a key signs.

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOrZero(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

func scanKeys(rows *sql.Rows) ([]mailauth.Key, error) {
	defer rows.Close()
	var out []mailauth.Key
	for rows.Next() {
		var k mailauth.Key
		var alg string
		var created, retired int64
		if err := rows.Scan(&k.Domain, &k.Selector, &alg, &k.PrivateKey, &created, &retired); err != nil {
			return nil, err
		}
		k.Algorithm, k.Created, k.Retired = mailauth.Algorithm(alg), timeOrZero(created), timeOrZero(retired)
		out = append(out, k)
	}
	return out, rows.Err()
}

const keyColumns = `domain, selector, algorithm, private_key, created_at, retired_at`

// DKIMKeys implements mailauth.KeyStore.
func (s *Store) DKIMKeys(ctx context.Context, domain string) ([]mailauth.Key, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+keyColumns+` FROM dkim_keys WHERE domain = ? ORDER BY created_at, selector`,
		store.DKIMDomain(domain))
	if err != nil {
		return nil, err
	}
	return scanKeys(rows)
}

// AddDKIMKey implements mailauth.KeyStore.
func (s *Store) AddDKIMKey(ctx context.Context, k mailauth.Key) error {
	k, err := store.NormalizeDKIMKey(k)
	if err != nil {
		return err
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO dkim_keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		k.Domain, k.Selector, string(k.Algorithm), k.PrivateKey, k.Created.Unix(), unixOrZero(k.Retired))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%s._domainkey.%s: %w", k.Selector, k.Domain, mailauth.ErrKeyExists)
	}
	return nil
}

// RetireDKIMKey implements mailauth.KeyStore. Retiring a retired key
// keeps its first retirement time.
func (s *Store) RetireDKIMKey(ctx context.Context, domain, selector string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("retiring a DKIM key at no time: %w", store.ErrInvalid)
	}
	d := store.DKIMDomain(domain)
	return s.write(ctx, func(tx *sql.Tx) error {
		var retired int64
		err := tx.QueryRowContext(ctx, `SELECT retired_at FROM dkim_keys WHERE domain = ? AND selector = lower(?)`, d, selector).Scan(&retired)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s._domainkey.%s: %w", selector, d, mailauth.ErrKeyNotFound)
		}
		if err != nil || retired != 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE dkim_keys SET retired_at = ? WHERE domain = ? AND selector = lower(?)`, max(at.Unix(), 1), d, selector)
		return err
	})
}

// ExportDKIMKeys implements store.Exporter.
func (s *Store) ExportDKIMKeys(ctx context.Context) ([]mailauth.Key, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+keyColumns+` FROM dkim_keys ORDER BY domain, created_at, selector`)
	if err != nil {
		return nil, err
	}
	return scanKeys(rows)
}

// ImportDKIMKey implements store.Importer.
func (s *Store) ImportDKIMKey(ctx context.Context, k mailauth.Key) (bool, error) {
	k, err := store.NormalizeDKIMKey(k)
	if err != nil {
		return false, err
	}
	changed := false
	err = s.write(ctx, func(tx *sql.Tx) error {
		var pem []byte
		var retired int64
		err := tx.QueryRowContext(ctx, `SELECT private_key, retired_at FROM dkim_keys WHERE domain = ? AND selector = ?`,
			k.Domain, k.Selector).Scan(&pem, &retired)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			changed = true
			_, err = tx.ExecContext(ctx, `INSERT INTO dkim_keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
				k.Domain, k.Selector, string(k.Algorithm), k.PrivateKey, k.Created.Unix(), unixOrZero(k.Retired))
			return err
		case err != nil:
			return err
		case string(pem) != string(k.PrivateKey):
			return fmt.Errorf("%s._domainkey.%s: %w", k.Selector, k.Domain, mailauth.ErrKeyExists)
		case retired == 0 && !k.Retired.IsZero():
			changed = true
			_, err = tx.ExecContext(ctx, `UPDATE dkim_keys SET retired_at = ? WHERE domain = ? AND selector = ?`,
				max(k.Retired.Unix(), 1), k.Domain, k.Selector)
			return err
		}
		return nil
	})
	return changed && err == nil, err
}
