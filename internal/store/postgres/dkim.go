package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// mailauth.KeyStore: the DKIM keys in the dkim_keys table, which every
// node reads, so that every node signs with the same keys. retired_at is
// NULL while a key signs.

const keyColumns = `domain, selector, algorithm, private_key, created_at, retired_at`

func scanKeys(rows pgx.Rows) ([]mailauth.Key, error) {
	defer rows.Close()
	var out []mailauth.Key
	for rows.Next() {
		var k mailauth.Key
		var alg string
		var retired *time.Time
		if err := rows.Scan(&k.Domain, &k.Selector, &alg, &k.PrivateKey, &k.Created, &retired); err != nil {
			return nil, err
		}
		k.Algorithm, k.Created = mailauth.Algorithm(alg), k.Created.UTC()
		if retired != nil {
			k.Retired = retired.UTC()
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func retiredArg(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// DKIMKeys implements mailauth.KeyStore.
func (s *Store) DKIMKeys(ctx context.Context, domain string) ([]mailauth.Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM dkim_keys WHERE domain = $1 ORDER BY created_at, selector`,
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
	tag, err := s.pool.Exec(ctx, `INSERT INTO dkim_keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		k.Domain, k.Selector, string(k.Algorithm), k.PrivateKey, k.Created, retiredArg(k.Retired))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
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
	var one int
	err := s.pool.QueryRow(ctx, `WITH k AS (SELECT domain, selector FROM dkim_keys WHERE domain = $1 AND selector = lower($2)),
		u AS (UPDATE dkim_keys SET retired_at = $3 WHERE domain = $1 AND selector = lower($2) AND retired_at IS NULL)
		SELECT 1 FROM k`, d, selector, at.UTC().Truncate(time.Second)).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s._domainkey.%s: %w", selector, d, mailauth.ErrKeyNotFound)
	}
	return err
}

// ExportDKIMKeys implements store.Exporter.
func (s *Store) ExportDKIMKeys(ctx context.Context) ([]mailauth.Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM dkim_keys ORDER BY domain, created_at, selector`)
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
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var pem []byte
		var retired *time.Time
		err := tx.QueryRow(ctx, `SELECT private_key, retired_at FROM dkim_keys WHERE domain = $1 AND selector = $2 FOR UPDATE`,
			k.Domain, k.Selector).Scan(&pem, &retired)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			changed = true
			_, err = tx.Exec(ctx, `INSERT INTO dkim_keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
				k.Domain, k.Selector, string(k.Algorithm), k.PrivateKey, k.Created, retiredArg(k.Retired))
			return err
		case err != nil:
			return err
		case string(pem) != string(k.PrivateKey):
			return fmt.Errorf("%s._domainkey.%s: %w", k.Selector, k.Domain, mailauth.ErrKeyExists)
		case retired == nil && !k.Retired.IsZero():
			changed = true
			_, err = tx.Exec(ctx, `UPDATE dkim_keys SET retired_at = $3 WHERE domain = $1 AND selector = $2`,
				k.Domain, k.Selector, k.Retired)
			return err
		}
		return nil
	})
	return changed && err == nil, err
}
