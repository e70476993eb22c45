package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// AddDomain implements store.Directory.
func (s *Store) AddDomain(ctx context.Context, name string) error {
	d, err := address.NormalizeDomain(name)
	if err != nil {
		return store.Invalid(err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO domains (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING`, d, time.Now().Unix())
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("domain %s: %w", d, store.ErrExists)
	}
	return nil
}

// DeleteDomain implements store.Directory.
func (s *Store) DeleteDomain(ctx context.Context, name string) error {
	d, err := address.NormalizeDomain(name)
	if err != nil {
		return store.Invalid(err)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var users, addrs, aliases int
		err := tx.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM users WHERE domain = ?1),
			(SELECT count(*) FROM user_addresses WHERE domain = ?1),
			(SELECT count(*) FROM aliases WHERE domain = ?1)`, d).Scan(&users, &addrs, &aliases)
		if err != nil {
			return err
		}
		if users+addrs+aliases > 0 {
			return &store.DomainInUseError{Domain: d, Users: users, Addresses: addrs, Aliases: aliases}
		}
		return deleteOne(ctx, tx, `DELETE FROM domains WHERE name = ?`, d, "domain "+d)
	})
}

// deleteOne runs a DELETE of one row and reports ErrNotFound about what if
// there was none.
func deleteOne(ctx context.Context, e execer, query string, arg any, what string) error {
	res, err := e.ExecContext(ctx, query, arg)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// ListDomains implements store.Directory.
func (s *Store) ListDomains(ctx context.Context) ([]store.Domain, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, created_at FROM domains ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ds []store.Domain
	for rows.Next() {
		var d store.Domain
		var created int64
		if err := rows.Scan(&d.Name, &created); err != nil {
			return nil, err
		}
		d.CreatedAt = unixTime(created)
		ds = append(ds, d)
	}
	return ds, rows.Err()
}

// HasDomain implements store.Directory.
func (s *Store) HasDomain(ctx context.Context, name string) (bool, error) {
	d, err := address.NormalizeDomain(name)
	if err != nil {
		return false, store.Invalid(err)
	}
	var ok bool
	err = s.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM domains WHERE name = ?)`, d).Scan(&ok)
	return ok, err
}

// addDomainTx adds the domain of a new address if it is not there yet.
func addDomainTx(ctx context.Context, tx *sql.Tx, domain string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO domains (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING`,
		domain, time.Now().Unix())
	return err
}

// checkFree returns ErrExists if addr is a user's, an extra address or an
// alias. Called inside the write transaction that then takes addr, which
// makes the check and the insert atomic.
func checkFree(ctx context.Context, tx *sql.Tx, addr string) error {
	var kind string
	err := tx.QueryRowContext(ctx, `
		SELECT 'a user' FROM users WHERE address = ?1
		UNION ALL SELECT 'an extra address' FROM user_addresses WHERE address = ?1
		UNION ALL SELECT 'an alias' FROM aliases WHERE address = ?1
		LIMIT 1`, addr).Scan(&kind)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	default:
		return fmt.Errorf("%s is %s: %w", addr, kind, store.ErrExists)
	}
}

func domainOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[i+1:]
		}
	}
	return ""
}

// AddUser implements store.Directory.
func (s *Store) AddUser(ctx context.Context, u store.User) (store.User, error) {
	addr, err := address.Normalize(u.Address)
	if err != nil {
		return store.User{}, store.Invalid(err)
	}
	if u.QuotaBytes < 0 {
		return store.User{}, fmt.Errorf("negative quota %d: %w", u.QuotaBytes, store.ErrInvalid)
	}
	if u.LoginDelay != nil && *u.LoginDelay < 0 {
		return store.User{}, fmt.Errorf("negative login delay %v: %w", *u.LoginDelay, store.ErrInvalid)
	}
	if p := store.SpamScoreProblem(u.SpamRejectScore); p != "" {
		return store.User{}, fmt.Errorf("spam reject score %s: %w", p, store.ErrInvalid)
	}
	u.LastLogin = time.Time{}
	u.Address = addr
	now := time.Now()
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := checkFree(ctx, tx, addr); err != nil {
			return err
		}
		if err := addDomainTx(ctx, tx, domainOf(addr)); err != nil {
			return err
		}
		// Seconds since 1970 fit in 32 bits until 2106.
		err := tx.QueryRowContext(ctx, `UPDATE meta SET value = max(value + 1, ?)
			WHERE key = 'last_uid_validity' RETURNING value`, uint32(now.Unix())).Scan(&u.UIDValidity)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO users
			(address, domain, display_name, password_hash, enabled, quota_bytes, created_at, uid_validity, login_delay, expire,
				spam_reject_score)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			addr, domainOf(addr), u.DisplayName, u.PasswordHash, u.Enabled, u.QuotaBytes, now.Unix(), u.UIDValidity,
			secondsOf(u.LoginDelay), secondsOf(u.Expire), u.SpamRejectScore,
		).Scan(&u.ID)
	})
	if err != nil {
		return store.User{}, err
	}
	u.CreatedAt = unixTime(now.Unix())
	return u, nil
}

const userColumns = `u.id, u.address, u.display_name, u.password_hash, u.enabled, u.quota_bytes, u.created_at, u.uid_validity,
	u.login_delay, u.expire, u.last_login, u.spam_reject_score`

func scanUser(sc interface{ Scan(...any) error }) (store.User, error) {
	var u store.User
	var created, lastLogin int64
	var loginDelay, expire sql.NullInt64
	var spam sql.NullFloat64
	err := sc.Scan(&u.ID, &u.Address, &u.DisplayName, &u.PasswordHash, &u.Enabled, &u.QuotaBytes, &created, &u.UIDValidity,
		&loginDelay, &expire, &lastLogin, &spam)
	if spam.Valid {
		u.SpamRejectScore = &spam.Float64
	}
	u.CreatedAt = unixTime(created)
	u.LoginDelay = durationOf(loginDelay)
	u.Expire = durationOf(expire)
	if lastLogin != 0 {
		u.LastLogin = unixTime(lastLogin)
	}
	return u, err
}

// UserByAddress implements store.Directory.
func (s *Store) UserByAddress(ctx context.Context, raw string) (store.User, error) {
	addr, err := address.Normalize(raw)
	if err != nil {
		return store.User{}, store.Invalid(err)
	}
	u, err := scanUser(s.r.QueryRowContext(ctx, `
		SELECT `+userColumns+` FROM users u WHERE u.address = ?1
		UNION ALL
		SELECT `+userColumns+` FROM user_addresses a JOIN users u ON u.id = a.user_id WHERE a.address = ?1
		LIMIT 1`, addr))
	return u, notFound(err, "user %s", addr)
}

// UserByID implements store.Directory.
func (s *Store) UserByID(ctx context.Context, id int64) (store.User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = ?`, id))
	return u, notFound(err, "user %d", id)
}

// ListUsers implements store.Directory; users come sorted by address.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+userColumns+` FROM users u ORDER BY u.address`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var us []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		us = append(us, u)
	}
	return us, rows.Err()
}

// UpdateUser implements store.Directory.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	if u.QuotaBytes < 0 {
		return fmt.Errorf("negative quota %d: %w", u.QuotaBytes, store.ErrInvalid)
	}
	if u.LoginDelay != nil && *u.LoginDelay < 0 {
		return fmt.Errorf("negative login delay %v: %w", *u.LoginDelay, store.ErrInvalid)
	}
	if p := store.SpamScoreProblem(u.SpamRejectScore); p != "" {
		return fmt.Errorf("spam reject score %s: %w", p, store.ErrInvalid)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE users SET display_name = ?, password_hash = ?, enabled = ?, quota_bytes = ?,
		login_delay = ?, expire = ?, spam_reject_score = ? WHERE id = ?`,
		u.DisplayName, u.PasswordHash, u.Enabled, u.QuotaBytes, secondsOf(u.LoginDelay), secondsOf(u.Expire), u.SpamRejectScore, u.ID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("user %d: %w", u.ID, store.ErrNotFound)
	}
	return nil
}

// DeleteUser implements store.Directory. Message files the user shared
// with nobody are removed after the commit.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	var dropped []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		blobIDs, err := queryStrings(ctx, tx, `SELECT DISTINCT blob_id FROM messages WHERE user_id = ?`, id)
		if err != nil {
			return err
		}
		// Cascades to the messages and extra addresses.
		if err := deleteOne(ctx, tx, `DELETE FROM users WHERE id = ?`, id, fmt.Sprintf("user %d", id)); err != nil {
			return err
		}
		dropped, err = dropUnreferenced(ctx, tx, blobIDs)
		return err
	})
	if err != nil {
		return err
	}
	s.removeBlobs(dropped)
	return nil
}

func queryStrings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ss []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		ss = append(ss, v)
	}
	return ss, rows.Err()
}

// userExists returns ErrNotFound unless user id exists.
func userExists(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id int64) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, id).Scan(&one)
	return notFound(err, "user %d", id)
}

// AddAddress implements store.Directory; like AddUser, it adds the
// address's domain if needed.
func (s *Store) AddAddress(ctx context.Context, userID int64, raw string) error {
	addr, err := address.Normalize(raw)
	if err != nil {
		return store.Invalid(err)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if err := userExists(ctx, tx, userID); err != nil {
			return err
		}
		if err := checkFree(ctx, tx, addr); err != nil {
			return err
		}
		if err := addDomainTx(ctx, tx, domainOf(addr)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO user_addresses (address, user_id, domain) VALUES (?, ?, ?)`,
			addr, userID, domainOf(addr))
		return err
	})
}

// DeleteAddress implements store.Directory. It removes extra addresses
// only; a primary address goes with its user.
func (s *Store) DeleteAddress(ctx context.Context, raw string) error {
	addr, err := address.Normalize(raw)
	if err != nil {
		return store.Invalid(err)
	}
	return deleteOne(ctx, s.w, `DELETE FROM user_addresses WHERE address = ?`, addr, "extra address "+addr)
}

// ListAddresses implements store.Directory.
func (s *Store) ListAddresses(ctx context.Context, userID int64) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT address FROM user_addresses WHERE user_id = ? ORDER BY address`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var as []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(as) == 0 {
		return nil, userExists(ctx, s.r, userID)
	}
	return as, nil
}

// SetAlias implements store.Directory. Targets are normalized, sorted and
// deduplicated; the alias's domain is added if needed.
func (s *Store) SetAlias(ctx context.Context, a store.Alias) error {
	a, err := store.NormalizeAlias(a)
	if err != nil {
		return err
	}
	addr, targets := a.Address, a.Targets

	return s.write(ctx, func(tx *sql.Tx) error {
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM aliases WHERE address = ?)`, addr).Scan(&exists); err != nil {
			return err
		}
		if exists {
			if _, err := tx.ExecContext(ctx, `DELETE FROM alias_targets WHERE alias = ?`, addr); err != nil {
				return err
			}
		} else {
			if err := checkFree(ctx, tx, addr); err != nil {
				return err
			}
			if err := addDomainTx(ctx, tx, domainOf(addr)); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO aliases (address, domain) VALUES (?, ?)`, addr, domainOf(addr)); err != nil {
				return err
			}
		}
		for _, t := range targets {
			if _, err := tx.ExecContext(ctx, `INSERT INTO alias_targets (alias, target) VALUES (?, ?)`, addr, t); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteAlias implements store.Directory.
func (s *Store) DeleteAlias(ctx context.Context, raw string) error {
	addr, err := address.NormalizeAlias(raw)
	if err != nil {
		return store.Invalid(err)
	}
	return deleteOne(ctx, s.w, `DELETE FROM aliases WHERE address = ?`, addr, "alias "+addr)
}

// Alias implements store.Directory.
func (s *Store) Alias(ctx context.Context, raw string) (store.Alias, error) {
	addr, err := address.NormalizeAlias(raw)
	if err != nil {
		return store.Alias{}, store.Invalid(err)
	}
	as, err := s.aliases(ctx, `WHERE alias = ?`, addr)
	if err != nil {
		return store.Alias{}, err
	}
	if len(as) == 0 {
		return store.Alias{}, fmt.Errorf("alias %s: %w", addr, store.ErrNotFound)
	}
	return as[0], nil
}

// ListAliases implements store.Directory; aliases come sorted by address.
func (s *Store) ListAliases(ctx context.Context) ([]store.Alias, error) {
	return s.aliases(ctx, "")
}

// aliases reads aliases from their targets (every alias has at least one)
// in one statement, hence from one snapshot.
func (s *Store) aliases(ctx context.Context, where string, args ...any) ([]store.Alias, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT alias, target FROM alias_targets `+where+` ORDER BY alias, target`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var as []store.Alias
	for rows.Next() {
		var addr, target string
		if err := rows.Scan(&addr, &target); err != nil {
			return nil, err
		}
		if len(as) == 0 || as[len(as)-1].Address != addr {
			as = append(as, store.Alias{Address: addr})
		}
		as[len(as)-1].Targets = append(as[len(as)-1].Targets, target)
	}
	return as, rows.Err()
}
