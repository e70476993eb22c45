// Package postgres is the cluster backend of postoffice: the directory, the
// mailboxes (index and message bodies), the outbound queue and the journal
// in one PostgreSQL database that several postoffice nodes share.
//
// Everything a node knows lives in the database, so any node can serve any
// mailbox; what must hold across nodes is done there too:
//
//   - The maildrop lock (RFC 1939 section 8) is a row with a lease that the
//     holding node renews while the session lasts (lock.go): a node that
//     dies stops renewing, and its locks can be taken once the lease runs
//     out.
//   - Queue claims name the node that made them; a claim made by a node
//     that is no longer alive (whose heartbeat in node_instances ran out)
//     is handed out again at once, whatever the length of its lease
//     (queue.go). Rows are claimed with SELECT ... FOR UPDATE SKIP LOCKED.
//   - UIDs come from a per-mailbox counter (users.next_uid) updated in the
//     delivering transaction, UID validities from one counter row (meta):
//     both are unique whichever node assigns them.
//   - Changes to the directory are transactions like any other: every node
//     sees them at once (there is no cache).
//
// Message bodies are stored once however many mailboxes get them, behind a
// small interface (blob.go) so that an object store can replace the
// in-database implementation later.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// DefaultLease is how long a maildrop lock, and a node's liveness, outlast
// the last renewal: a node that dies releases its locks and its queue
// claims within this time.
const DefaultLease = 30 * time.Second

// Options tune a Store beyond its connection string and node name.
type Options struct {
	// Lease bounds how long a dead node's maildrop locks and queue claims
	// outlive it (DefaultLease if 0). It is renewed every third of it.
	Lease time.Duration
	// Logger receives the background work's problems (slog.Default() if
	// nil).
	Logger *slog.Logger
	// Password, if set, is used instead of any in dsn (which then need
	// not carry a secret).
	Password string
}

// Store is the PostgreSQL backend; it implements store.Store.
type Store struct {
	pool     *pgxpool.Pool
	node     string // the configured node name
	instance string // this process's Store: node name and a random suffix
	lease    time.Duration
	log      *slog.Logger
	blobs    blobStore

	locksMu sync.Mutex
	locks   map[string]int64 // token -> user ID of the maildrop locks held

	stop     chan struct{}
	stopped  chan struct{}
	closeErr error
	once     sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database dsn (a PostgreSQL URL or key=value
// string; pgxpool's pool_* parameters are honoured), creates or migrates
// the schema and registers this process as a live instance of node
// nodeName. The schema is the first of the connection's search_path
// (e.g. ?search_path=postoffice in a URL).
func Open(ctx context.Context, dsn, nodeName string) (*Store, error) {
	return OpenWith(ctx, dsn, nodeName, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, dsn, nodeName string, o Options) (*Store, error) {
	nodeName = strings.TrimSpace(nodeName)
	if nodeName == "" {
		return nil, errors.New("postgres: empty node name")
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Lease < 3*time.Second {
		// Renewed every third: less would be renewals without pause.
		return nil, fmt.Errorf("postgres: lease %v is shorter than 3s", o.Lease)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the string, password included.
		return nil, errors.New("postgres: cannot parse the connection string (postgres_dsn)")
	}
	if o.Password != "" {
		cfg.ConnConfig.Password = o.Password
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// Each POP3 command and SMTP transaction borrows a connection for
		// a statement or a transaction; pgx's default (4) is for a client.
		cfg.MaxConns = int32(max(16, 4*runtime.GOMAXPROCS(0)))
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "postoffice " + nodeName
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connecting: %w", err)
	}
	s := &Store{
		pool:     pool,
		node:     nodeName,
		instance: fmt.Sprintf("%s/%d/%s", nodeName, os.Getpid(), randomHex(6)),
		lease:    o.Lease,
		log:      o.Logger.With("store", "postgres", "node", nodeName),
		locks:    map[string]int64{},
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	s.blobs = dbBlobs{q: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.heartbeat(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: registering node %s: %w", nodeName, err)
	}
	go s.renewLoop()
	return s, nil
}

// Node returns the node name this store registered as.
func (s *Store) Node() string { return s.node }

// Close stops renewing, releases this process's maildrop locks and
// liveness row (its queue claims then go to other nodes at once, should it
// have left any), and closes the connections.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.stopped
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err1 := s.pool.Exec(ctx, `DELETE FROM mailbox_locks WHERE instance = $1`, s.instance)
		_, err2 := s.pool.Exec(ctx, `DELETE FROM node_instances WHERE instance = $1`, s.instance)
		s.closeErr = errors.Join(err1, err2)
		s.pool.Close()
	})
	return s.closeErr
}

// renewLoop renews this instance's liveness and its maildrop locks every
// third of the lease, until Close.
func (s *Store) renewLoop() {
	defer close(s.stopped)
	t := time.NewTicker(s.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.lease/3)
		if err := s.heartbeat(ctx); err != nil {
			s.log.Error("renewing node liveness", "err", err)
		}
		if err := s.renewLocks(ctx); err != nil {
			s.log.Error("renewing maildrop locks", "err", err)
		}
		cancel()
	}
}

// heartbeat records that this instance is alive for one more lease, and
// forgets instances dead for long.
func (s *Store) heartbeat(ctx context.Context) error {
	host, _ := os.Hostname()
	_, err := s.pool.Exec(ctx, `INSERT INTO node_instances (instance, node, host, pid, started_at, expires_at)
		VALUES ($1, $2, $3, $4, now(), now() + $5 * interval '1 millisecond')
		ON CONFLICT (instance) DO UPDATE SET expires_at = EXCLUDED.expires_at`,
		s.instance, s.node, host, os.Getpid(), s.lease.Milliseconds())
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `DELETE FROM node_instances WHERE expires_at < now() - interval '1 day'`)
	return err
}

// NodeInfo describes one live postoffice process using the database.
type NodeInfo struct {
	Node     string
	Instance string
	Host     string
	PID      int
	Started  time.Time
	Expires  time.Time
}

// Nodes lists the instances whose liveness has not run out, by node name.
func (s *Store) Nodes(ctx context.Context) ([]NodeInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT node, instance, host, pid, started_at, expires_at
		FROM node_instances WHERE expires_at > now() ORDER BY node, started_at`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (NodeInfo, error) {
		var n NodeInfo
		err := r.Scan(&n.Node, &n.Instance, &n.Host, &n.PID, &n.Started, &n.Expires)
		n.Started, n.Expires = n.Started.UTC(), n.Expires.UTC()
		return n, err
	})
}

// write runs fn in a transaction and commits it; a commit is durable when
// it returns (synchronous_commit, PostgreSQL's default). A transaction
// that failed on a serialization failure or a deadlock is run again when
// replayable says fn can run twice (it consumes no stream).
func (s *Store) write(ctx context.Context, replayable bool, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || !replayable || attempt == 5 || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt*attempt) * 10 * time.Millisecond):
		}
	}
}

// retryable reports a serialization failure or a deadlock.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// isUniqueViolation reports a unique_violation.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// notFound turns pgx.ErrNoRows into store.ErrNotFound about what.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), store.ErrNotFound)
	}
	return err
}

// Advisory lock classes (the first key of pg_advisory_xact_lock(int, int)).
const (
	lockAddress = 0x706f0001 // one address of the shared namespace
	lockDomain  = 0x706f0002 // a domain: shared to add to it, exclusive to delete it
)

// lockKey hashes a name into an advisory lock key.
func lockKey(name string) int32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int32(h.Sum32())
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return hex.EncodeToString(b)
}

// sec truncates t to the second, as the embedded backend stores it, so
// that both backends return the same times.
func sec(t time.Time) time.Time { return t.Truncate(time.Second).UTC() }

// optTime returns a nullable time, the zero time for NULL.
func optTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = sec(t)
	return &t
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// RedactDSN returns dsn with any password masked, for messages.
func RedactDSN(dsn string) string {
	if strings.Contains(dsn, "://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			if q.Has("password") {
				q.Set("password", "xxxxx")
				u.RawQuery = q.Encode()
			}
			return u.Redacted()
		}
		return "(unparsable URL)"
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// LiveNodes returns the names of the nodes with a live instance, sorted.
func (s *Store) LiveNodes(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT node FROM node_instances WHERE expires_at > now() ORDER BY node`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
