// Package postgres is the cluster backend of postoffice: the directory, the
// mailboxes (index and message bodies), the outbound queue and the journal
// in one PostgreSQL database that several postoffice nodes share.
//
// Everything a node knows lives in the database, so any node can serve any
// mailbox; what must hold across nodes is done there too:
//
//   - A node name is held by one live process at a time, its instance (a
//     random id), which renews a lease on it (node.go): a second process
//     under the same name is refused, or takes the name over only once
//     the first stopped renewing.
//   - The maildrop lock (RFC 1939 section 8) is a row with a lease that the
//     holding process renews while the session lasts (lock.go): a session
//     whose lock was not renewed within the lease knows it lost it, and the
//     deletions at QUIT are applied only in a transaction that finds the
//     lock still held. A lock whose release failed (the database was out
//     of reach) is released again in the background.
//   - Queue claims name the instance that made them; a claim of an
//     instance that no longer holds its node name's lease is handed out
//     again at once, whatever the length of the claim (queue.go). Rows
//     are claimed with SELECT ... FOR UPDATE SKIP LOCKED.
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

// DefaultLease is how long a node's liveness, and each maildrop lock it
// holds, outlast their last renewal: the locks and queue claims of a
// process that dies go within this time.
const DefaultLease = 30 * time.Second

// Options tune a Store beyond its connection string and node name.
type Options struct {
	// Lease bounds how long a dead process's maildrop locks and queue
	// claims outlive it (DefaultLease if 0). It is renewed every third of
	// it.
	Lease time.Duration
	// Logger receives the background work's problems (slog.Default() if
	// nil).
	Logger *slog.Logger
	// Password, if set, is used instead of any in dsn (which then need
	// not carry a secret).
	Password string
	// Join makes this process the node's one live instance (see node.go),
	// as postoffice serve needs in order to take maildrop locks and claim
	// queued messages: OpenWith waits, at most the other process's lease,
	// for a previous instance that stopped renewing, and fails with an
	// error naming a live one. Without Join (the other commands: deliver,
	// user, queue...) the store reads and writes everything else, and Lock
	// and ClaimQueued fail.
	Join bool
}

// Store is the PostgreSQL backend; it implements store.Store.
type Store struct {
	pool     pgdb   // the connection pool; in a Snapshot, its transaction
	node     string // the configured node name
	instance string // this process's random identity while it holds node
	joined   bool
	lease    time.Duration
	log      *slog.Logger
	blobs    blobStore

	locksMu  sync.Mutex
	locks    map[string]*lockHandle // token -> maildrop lock held
	releases map[string]release     // token -> lock whose release failed
	retrying bool                   // a goroutine retries the releases

	lastBeat time.Time // when the last renewal of the node name was sent

	lostOnce sync.Once
	lost     chan struct{} // closed once another process holds the node name
	lostErr  error         // why, set before lost is closed

	stop     chan struct{}
	bg       sync.WaitGroup // background goroutines, ended by stop
	closeErr error
	once     sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database dsn (a PostgreSQL URL or key=value
// string; pgxpool's pool_* parameters are honoured) and creates or
// migrates the schema. The schema is the first of the connection's
// search_path (e.g. ?search_path=postoffice in a URL).
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
		instance: randomHex(8),
		lease:    o.Lease,
		log:      o.Logger.With("store", "postgres", "node", nodeName),
		locks:    map[string]*lockHandle{},
		releases: map[string]release{},
		lost:     make(chan struct{}),
		stop:     make(chan struct{}),
	}
	s.blobs = dbBlobs{q: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if o.Join {
		s.log = s.log.With("instance", s.instance)
		if err := s.join(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres: %w", err)
		}
		s.joined = true
		s.bg.Add(1)
		go s.renewLoop()
	}
	return s, nil
}

// Node returns the node name this store was opened as.
func (s *Store) Node() string { return s.node }

// Instance returns this process's instance id: random, and the holder of
// the node name while the process lives (Options.Join).
func (s *Store) Instance() string { return s.instance }

// Lost is closed once this process no longer holds its node name because
// another process took it (this one lost the database for longer than
// the lease, and the other started meanwhile). The process should stop:
// its maildrop locks and queue claims are void. LostErr says why.
func (s *Store) Lost() <-chan struct{} { return s.lost }

// LostErr is the reason Lost was closed, nil before.
func (s *Store) LostErr() error {
	select {
	case <-s.lost:
		return s.lostErr
	default:
		return nil
	}
}

// member is nil while this process holds its node name: the condition
// for taking maildrop locks and claiming queued messages.
func (s *Store) member() error {
	if !s.joined {
		return fmt.Errorf("postgres: %w: this process has not joined as node %s (only postoffice serve does)", errNotMember, s.node)
	}
	select {
	case <-s.lost:
		return fmt.Errorf("postgres: %w: %w", errNotMember, s.lostErr)
	default:
		return nil
	}
}

// errNotMember: the process does not hold its node name.
var errNotMember = errors.New("not the node's live instance")

// Close stops renewing, releases this process's maildrop locks and its
// node name (its queue claims then go to other nodes at once, should it
// have left any), and closes the connections.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.locksMu.Lock() // no release retry starts after this
		close(s.stop)
		s.locksMu.Unlock()
		s.bg.Wait()
		if s.joined {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err1 := s.pool.Exec(ctx, `DELETE FROM mailbox_locks WHERE instance = $1`, s.instance)
			_, err2 := s.pool.Exec(ctx, `DELETE FROM nodes WHERE node = $1 AND instance = $2`, s.node, s.instance)
			s.closeErr = errors.Join(err1, err2)
		}
		s.pool.Close()
	})
	return s.closeErr
}

// renewLoop renews this instance's hold on its node name and its maildrop
// locks every third of the lease, until Close.
func (s *Store) renewLoop() {
	defer s.bg.Done()
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
			s.log.Error("renewing the node's liveness", "err", err)
		}
		if err := s.renewLocks(ctx); err != nil {
			s.log.Error("renewing maildrop locks", "err", err)
		}
		cancel()
	}
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
