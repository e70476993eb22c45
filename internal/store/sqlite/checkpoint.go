package sqlite

import (
	"database/sql"
	"log/slog"
	"sync"
	"time"
)

// SQLite checkpoints (copies the WAL back into the database file and
// fsyncs it) inside the commit that takes the WAL past
// wal_autocheckpoint pages, and every writer waits behind that commit:
// under intake load that work (a measurable share of the server's CPU,
// see bench/RESULTS.md) would sit on the path of an SMTP acknowledgement. The checkpointer does that
// work from its own connection instead, every checkpointEvery; the
// writer's automatic checkpoint stays, at writerAutocheckpoint pages, as
// a backstop should the checkpointer fall behind.
const (
	checkpointEvery      = 500 * time.Millisecond
	writerAutocheckpoint = 10000 // pages, 40 MB of WAL
)

type checkpointer struct {
	db       *sql.DB
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	log      *slog.Logger
}

// startCheckpointer checkpoints the database at dsn until stopped.
func startCheckpointer(dsn string, log *slog.Logger) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	c := &checkpointer{db: db, stop: make(chan struct{}), done: make(chan struct{}), log: log}
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			c.checkpoint()
			return
		case <-t.C:
			c.checkpoint()
		}
	}
}

// checkpoint copies what it can without waiting for readers or writers
// (PASSIVE); what readers still use is copied next time.
func (c *checkpointer) checkpoint() {
	var busy, frames, copied int
	if err := c.db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		c.log.Warn("checkpointing the database", "err", err)
	}
}

// Close runs a last checkpoint and closes the connection; calling it
// again does nothing.
func (c *checkpointer) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
	return c.db.Close()
}
