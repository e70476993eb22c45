package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// AddDomain implements store.Directory.
func (s *Store) AddDomain(ctx context.Context, name string) error {
	d, err := address.NormalizeDomain(name)
	if err != nil {
		return store.Invalid(err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO domains (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, d, sec(time.Now()))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("domain %s: %w", d, store.ErrExists)
	}
	return nil
}

// DeleteDomain implements store.Directory. The exclusive lock of the
// domain waits for transactions adding to it, and keeps new ones out until
// the domain is gone.
func (s *Store) DeleteDomain(ctx context.Context, name string) error {
	d, err := address.NormalizeDomain(name)
	if err != nil {
		return store.Invalid(err)
	}
	return s.write(ctx, true, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, int32(lockDomain), lockKey(d)); err != nil {
			return err
		}
		var users, addrs, aliases int
		err := tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM users WHERE domain = $1),
			(SELECT count(*) FROM user_addresses WHERE domain = $1),
			(SELECT count(*) FROM aliases WHERE domain = $1)`, d).Scan(&users, &addrs, &aliases)
		if err != nil {
			return err
		}
		if users+addrs+aliases > 0 {
			return &store.DomainInUseError{Domain: d, Users: users, Addresses: addrs, Aliases: aliases}
		}
		return execOne(ctx, tx, "domain "+d, `DELETE FROM domains WHERE name = $1`, d)
	})
}

// execer runs a statement: a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// execOne runs a statement meant to change one row and reports
// ErrNotFound about what if it changed none.
func execOne(ctx context.Context, e execer, what, query string, args ...any) error {
	tag, err := e.Exec(ctx, query, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// ListDomains implements store.Directory.
func (s *Store) ListDomains(ctx context.Context) ([]store.Domain, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, created_at FROM domains ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Domain, error) {
		var d store.Domain
		err := r.Scan(&d.Name, &d.CreatedAt)
		d.CreatedAt = d.CreatedAt.UTC()
		return d, err
	})
}

// HasDomain implements store.Directory.
func (s *Store) HasDomain(ctx context.Context, name string) (bool, error) {
	d, err := address.NormalizeDomain(name)
	if err != nil {
		return false, store.Invalid(err)
	}
	var ok bool
	err = s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM domains WHERE name = $1)`, d).Scan(&ok)
	return ok, err
}

// lockAddr takes, in tx, the advisory locks under which addr may be given
// to a user, an extra address or an alias: the address's (so that two
// nodes cannot give it twice, whichever tables they write) and its
// domain's, shared (so that the domain is not deleted meanwhile). Under
// READ COMMITTED, the statements after it see what the previous holder
// committed.
func lockAddr(ctx context.Context, tx pgx.Tx, addr string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1, $2), pg_advisory_xact_lock($3, $4)`,
		int32(lockDomain), lockKey(domainOf(addr)), int32(lockAddress), lockKey(addr))
	return err
}

// claimAddress checks, under lockAddr, that addr is free and adds its
// domain if needed.
func claimAddress(ctx context.Context, tx pgx.Tx, addr string) error {
	if err := checkFree(ctx, tx, addr); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO domains (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, domainOf(addr), sec(time.Now()))
	return err
}

// checkFree returns ErrExists if addr is a user's, an extra address or an
// alias.
func checkFree(ctx context.Context, tx pgx.Tx, addr string) error {
	var kind string
	err := tx.QueryRow(ctx, `
		SELECT 'a user' FROM users WHERE address = $1
		UNION ALL SELECT 'an extra address' FROM user_addresses WHERE address = $1
		UNION ALL SELECT 'an alias' FROM aliases WHERE address = $1
		LIMIT 1`, addr).Scan(&kind)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
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

// secondsOf stores a nullable duration as whole seconds; any negative
// value is stored as -1 ("never"), as the embedded backend does.
func secondsOf(d *time.Duration) *int64 {
	if d == nil {
		return nil
	}
	v := int64(*d / time.Second)
	if *d < 0 {
		v = -1
	}
	return &v
}

func durationOf(v *int64) *time.Duration {
	if v == nil {
		return nil
	}
	d := time.Duration(*v) * time.Second
	return &d
}

func checkUser(u store.User) error {
	if u.QuotaBytes < 0 {
		return fmt.Errorf("negative quota %d: %w", u.QuotaBytes, store.ErrInvalid)
	}
	if u.LoginDelay != nil && *u.LoginDelay < 0 {
		return fmt.Errorf("negative login delay %v: %w", *u.LoginDelay, store.ErrInvalid)
	}
	if p := store.SpamScoreProblem(u.SpamRejectScore); p != "" {
		return fmt.Errorf("spam reject score %s: %w", p, store.ErrInvalid)
	}
	return nil
}

// AddUser implements store.Directory.
func (s *Store) AddUser(ctx context.Context, u store.User) (store.User, error) {
	addr, err := address.Normalize(u.Address)
	if err != nil {
		return store.User{}, store.Invalid(err)
	}
	if err := checkUser(u); err != nil {
		return store.User{}, err
	}
	u.Address, u.LastLogin = addr, time.Time{}
	now := sec(time.Now())
	err = s.write(ctx, true, func(tx pgx.Tx) error {
		if err := lockAddr(ctx, tx, addr); err != nil {
			return err
		}
		if err := claimAddress(ctx, tx, addr); err != nil {
			return err
		}
		// Seconds since 1970 fit in 32 bits until 2106. The meta row's
		// lock orders the nodes creating users.
		err := tx.QueryRow(ctx, `UPDATE meta SET value = greatest(value + 1, $1)
			WHERE key = 'last_uid_validity' RETURNING value`, now.Unix()).Scan(&u.UIDValidity)
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO users
			(address, domain, display_name, password_hash, enabled, quota_bytes, created_at, uid_validity, login_delay, expire,
				spam_reject_score)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
			addr, domainOf(addr), u.DisplayName, u.PasswordHash, u.Enabled, u.QuotaBytes, now, int64(u.UIDValidity),
			secondsOf(u.LoginDelay), secondsOf(u.Expire), u.SpamRejectScore,
		).Scan(&u.ID)
	})
	if isUniqueViolation(err) {
		err = fmt.Errorf("%s: %w", addr, store.ErrExists)
	}
	if err != nil {
		return store.User{}, err
	}
	u.CreatedAt = now
	return u, nil
}

const userColumns = `u.id, u.address, u.display_name, u.password_hash, u.enabled, u.quota_bytes, u.created_at, u.uid_validity,
	u.login_delay, u.expire, u.last_login, u.spam_reject_score`

func scanUser(row pgx.Row) (store.User, error) {
	var u store.User
	var loginDelay, expire *int64
	var lastLogin *time.Time
	var validity int64
	err := row.Scan(&u.ID, &u.Address, &u.DisplayName, &u.PasswordHash, &u.Enabled, &u.QuotaBytes, &u.CreatedAt, &validity,
		&loginDelay, &expire, &lastLogin, &u.SpamRejectScore)
	u.UIDValidity = uint32(validity)
	u.CreatedAt = u.CreatedAt.UTC()
	u.LoginDelay, u.Expire = durationOf(loginDelay), durationOf(expire)
	u.LastLogin = optTime(lastLogin)
	return u, err
}

// UserByAddress implements store.Directory.
func (s *Store) UserByAddress(ctx context.Context, raw string) (store.User, error) {
	addr, err := address.Normalize(raw)
	if err != nil {
		return store.User{}, store.Invalid(err)
	}
	u, err := scanUser(s.pool.QueryRow(ctx, `
		SELECT `+userColumns+` FROM users u WHERE u.address = $1
		UNION ALL
		SELECT `+userColumns+` FROM user_addresses a JOIN users u ON u.id = a.user_id WHERE a.address = $1
		LIMIT 1`, addr))
	return u, notFound(err, "user %s", addr)
}

// UserByID implements store.Directory.
func (s *Store) UserByID(ctx context.Context, id int64) (store.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = $1`, id))
	return u, notFound(err, "user %d", id)
}

// ListUsers implements store.Directory; users come sorted by address.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users u ORDER BY u.address`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.User, error) { return scanUser(r) })
}

// UpdateUser implements store.Directory.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	if err := checkUser(u); err != nil {
		return err
	}
	return execOne(ctx, s.pool, fmt.Sprintf("user %d", u.ID), `UPDATE users SET display_name = $1, password_hash = $2, enabled = $3,
		quota_bytes = $4, login_delay = $5, expire = $6, spam_reject_score = $7 WHERE id = $8`,
		u.DisplayName, u.PasswordHash, u.Enabled, u.QuotaBytes, secondsOf(u.LoginDelay), secondsOf(u.Expire), u.SpamRejectScore, u.ID)
}

// DeleteUser implements store.Directory: the user, its extra addresses,
// its messages (bodies nobody else has go with them) and its lock.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	return s.write(ctx, true, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, id); err != nil {
			return err
		}
		refs, err := blobRefs(ctx, tx, `SELECT blob_id, count(*) FROM messages WHERE user_id = $1 GROUP BY blob_id`, id)
		if err != nil {
			return err
		}
		// Cascades to the messages, extra addresses and lock.
		if _, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id); err != nil {
			return err
		}
		return s.releaseBlobs(ctx, tx, refs)
	})
}

// lockUser locks the row of user id for the rest of tx: the mailbox's
// counters change only under it. ErrNotFound if there is no such user.
func lockUser(ctx context.Context, tx pgx.Tx, id int64) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, id).Scan(&one)
	return notFound(err, "user %d", id)
}

// blobRefs runs a query returning (blob id, count) pairs.
func blobRefs(ctx context.Context, tx pgx.Tx, query string, args ...any) (map[int64]int, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	refs := map[int64]int{}
	var id int64
	var n int
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		refs[id] += n
		return nil
	})
	return refs, err
}

// userExists returns ErrNotFound unless user id exists.
func (s *Store) userExists(ctx context.Context, id int64) error {
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1`, id).Scan(&one)
	return notFound(err, "user %d", id)
}

// AddAddress implements store.Directory; like AddUser, it adds the
// address's domain if needed.
func (s *Store) AddAddress(ctx context.Context, userID int64, raw string) error {
	addr, err := address.Normalize(raw)
	if err != nil {
		return store.Invalid(err)
	}
	err = s.write(ctx, true, func(tx pgx.Tx) error {
		// The user's row lock keeps a DeleteUser from passing in between.
		if err := lockUser(ctx, tx, userID); err != nil {
			return err
		}
		if err := lockAddr(ctx, tx, addr); err != nil {
			return err
		}
		if err := claimAddress(ctx, tx, addr); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO user_addresses (address, user_id, domain) VALUES ($1, $2, $3)`,
			addr, userID, domainOf(addr))
		return err
	})
	if isUniqueViolation(err) {
		err = fmt.Errorf("%s: %w", addr, store.ErrExists)
	}
	return err
}

// DeleteAddress implements store.Directory. It removes extra addresses
// only; a primary address goes with its user.
func (s *Store) DeleteAddress(ctx context.Context, raw string) error {
	addr, err := address.Normalize(raw)
	if err != nil {
		return store.Invalid(err)
	}
	return execOne(ctx, s.pool, "extra address "+addr, `DELETE FROM user_addresses WHERE address = $1`, addr)
}

// ListAddresses implements store.Directory.
func (s *Store) ListAddresses(ctx context.Context, userID int64) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT address FROM user_addresses WHERE user_id = $1 ORDER BY address`, userID)
	if err != nil {
		return nil, err
	}
	as, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	if len(as) == 0 {
		return nil, s.userExists(ctx, userID)
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

	err = s.write(ctx, true, func(tx pgx.Tx) error {
		if err := lockAddr(ctx, tx, addr); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM aliases WHERE address = $1)`, addr).Scan(&exists); err != nil {
			return err
		}
		if exists {
			if _, err := tx.Exec(ctx, `DELETE FROM alias_targets WHERE alias = $1`, addr); err != nil {
				return err
			}
		} else {
			if err := claimAddress(ctx, tx, addr); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO aliases (address, domain) VALUES ($1, $2)`, addr, domainOf(addr)); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO alias_targets (alias, target) SELECT $1, unnest($2::text[])`, addr, targets)
		return err
	})
	if isUniqueViolation(err) {
		err = fmt.Errorf("%s: %w", addr, store.ErrExists)
	}
	return err
}

// DeleteAlias implements store.Directory.
func (s *Store) DeleteAlias(ctx context.Context, raw string) error {
	addr, err := address.NormalizeAlias(raw)
	if err != nil {
		return store.Invalid(err)
	}
	return execOne(ctx, s.pool, "alias "+addr, `DELETE FROM aliases WHERE address = $1`, addr)
}

// Alias implements store.Directory.
func (s *Store) Alias(ctx context.Context, raw string) (store.Alias, error) {
	addr, err := address.NormalizeAlias(raw)
	if err != nil {
		return store.Alias{}, store.Invalid(err)
	}
	as, err := s.aliases(ctx, `WHERE alias = $1`, addr)
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
	rows, err := s.pool.Query(ctx, `SELECT alias, target FROM alias_targets `+where+` ORDER BY alias, target`, args...)
	if err != nil {
		return nil, err
	}
	var as []store.Alias
	var addr, target string
	_, err = pgx.ForEachRow(rows, []any{&addr, &target}, func() error {
		if len(as) == 0 || as[len(as)-1].Address != addr {
			as = append(as, store.Alias{Address: addr})
		}
		as[len(as)-1].Targets = append(as[len(as)-1].Targets, target)
		return nil
	})
	return as, err
}
