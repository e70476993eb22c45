package sqlite

// migrations[i] takes the schema from version i to version i+1 (PRAGMA
// user_version). Append only: a released step never changes.
var migrations = []string{
	// Version 1.
	//
	// Addresses are stored lower case, as address.Normalize makes
	// them. Users, extra addresses and aliases share one namespace, which
	// the code checks inside the writing transaction. Times are Unix
	// seconds.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) STRICT;
-- The last UIDVALIDITY handed out, so that a re-created user never gets
-- the value of a deleted one.
INSERT INTO meta (key, value) VALUES ('last_uid_validity', 0);

CREATE TABLE domains (
	name       TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
	-- AUTOINCREMENT: an ID is never reused, not even the highest one.
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	address       TEXT NOT NULL UNIQUE,
	domain        TEXT NOT NULL REFERENCES domains (name),
	display_name  TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	enabled       INTEGER NOT NULL,
	quota_bytes   INTEGER NOT NULL,
	created_at    INTEGER NOT NULL,
	uid_validity  INTEGER NOT NULL,
	-- Mailbox counters, maintained with every delivery and deletion so
	-- that neither the quota check nor STAT scans the messages.
	next_uid      INTEGER NOT NULL DEFAULT 1,
	msg_count     INTEGER NOT NULL DEFAULT 0,
	msg_bytes     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX users_domain ON users (domain);

CREATE TABLE user_addresses (
	address TEXT PRIMARY KEY,
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	domain  TEXT NOT NULL REFERENCES domains (name)
) STRICT;
CREATE INDEX user_addresses_user ON user_addresses (user_id);
CREATE INDEX user_addresses_domain ON user_addresses (domain);

CREATE TABLE aliases (
	address TEXT PRIMARY KEY,
	domain  TEXT NOT NULL REFERENCES domains (name)
) STRICT;
CREATE INDEX aliases_domain ON aliases (domain);

CREATE TABLE alias_targets (
	alias  TEXT NOT NULL REFERENCES aliases (address) ON DELETE CASCADE,
	target TEXT NOT NULL,
	PRIMARY KEY (alias, target)
) STRICT, WITHOUT ROWID;

-- One row per body file; messages rows are its references, and the row
-- goes (and then the file) with the last of them.
CREATE TABLE blobs (
	id         TEXT PRIMARY KEY,
	size       INTEGER NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE messages (
	user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	uid          INTEGER NOT NULL,
	blob_id      TEXT NOT NULL REFERENCES blobs (id),
	size         INTEGER NOT NULL,
	delivered_at INTEGER NOT NULL,
	PRIMARY KEY (user_id, uid)
) STRICT, WITHOUT ROWID;
CREATE INDEX messages_blob ON messages (blob_id);
`,
	// Version 2.
	//
	// Per-copy headers (trace fields such as Delivered-To), prepended to
	// the shared body when read and counted in messages.size; and the
	// outbound queue, whose entries are references to blobs like messages.
	`
ALTER TABLE messages ADD COLUMN header BLOB NOT NULL DEFAULT x'';

CREATE TABLE queue (
	-- AUTOINCREMENT: an ID is never reused, so a stale ID never names a
	-- newer entry.
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	sender       TEXT NOT NULL, -- '' for the null reverse-path
	blob_id      TEXT NOT NULL REFERENCES blobs (id),
	size         INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	next_attempt INTEGER NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	held         INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX queue_blob ON queue (blob_id);
CREATE INDEX queue_created ON queue (created_at, id);

CREATE TABLE queue_recipients (
	queue_id   INTEGER NOT NULL REFERENCES queue (id) ON DELETE CASCADE,
	position   INTEGER NOT NULL, -- order given to Enqueue
	address    TEXT NOT NULL,
	state      TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
	last_error TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (queue_id, position)
) STRICT, WITHOUT ROWID;
`,
	// Version 3: operations.
	//
	// Per-user POP3 policies (RFC 2449 LOGIN-DELAY and EXPIRE, seconds,
	// NULL follows the server setting, expire -1 is never), the last login,
	// the first retrieval of each message, the mail journal and the web
	// console's operator accounts.
	`
ALTER TABLE users ADD COLUMN login_delay INTEGER;
ALTER TABLE users ADD COLUMN expire INTEGER;
ALTER TABLE users ADD COLUMN last_login INTEGER NOT NULL DEFAULT 0;

ALTER TABLE messages ADD COLUMN retrieved_at INTEGER; -- NULL until the first RETR
CREATE INDEX messages_retrieved ON messages (user_id, retrieved_at) WHERE retrieved_at IS NOT NULL;

CREATE TABLE journal (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	at         INTEGER NOT NULL, -- Unix milliseconds
	event      TEXT NOT NULL,
	message_id TEXT NOT NULL DEFAULT '',
	tx_id      TEXT NOT NULL DEFAULT '',
	sender     TEXT NOT NULL DEFAULT '',
	recipients TEXT NOT NULL DEFAULT '', -- newline-separated
	mailbox    TEXT NOT NULL DEFAULT '',
	size       INTEGER NOT NULL DEFAULT 0,
	client     TEXT NOT NULL DEFAULT '',
	detail     TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX journal_at ON journal (at);
CREATE INDEX journal_mailbox ON journal (mailbox, at) WHERE mailbox != '';

CREATE TABLE admins (
	name          TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,
	created_at    INTEGER NOT NULL
) STRICT;
`,
	// Version 4: the outbound queue runner.
	//
	// Per-message: the last attempt, whether the delayed-delivery warning
	// went out, and a runner's claim (a lease, so that a runner that died
	// does not keep a message forever). Per-recipient: the RFC 3463 status
	// and the host of the last result, and whether the sender was notified
	// of a failure (so that a restart between a failure and its bounce
	// sends the bounce, and one after it does not send it again).
	`
ALTER TABLE queue ADD COLUMN last_attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue ADD COLUMN warned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;
CREATE INDEX queue_due ON queue (next_attempt, id) WHERE held = 0;

ALTER TABLE queue_recipients ADD COLUMN status TEXT NOT NULL DEFAULT '';
ALTER TABLE queue_recipients ADD COLUMN remote_mta TEXT NOT NULL DEFAULT '';
ALTER TABLE queue_recipients ADD COLUMN notified INTEGER NOT NULL DEFAULT 0;
`,
	// Version 5: small bodies inside the database (see InlineMax).
	//
	// data holds the body of a blob of at most InlineMax octets; NULL means
	// the body is in its file, as for every blob written before.
	`
ALTER TABLE blobs ADD COLUMN data BLOB;
`,
	// Version 6: DSN parameters and remote replies in the queue.
	//
	// Per-message: RET and ENVID (RFC 3461 sections 4.3 and 4.4).
	// Per-recipient: NOTIFY ('' when absent, else the values joined by
	// commas) and ORCPT (sections 4.1 and 4.2), and the remote reply that
	// decided the last result, kept as it came: code, enhanced status,
	// text lines joined by LF, the command it answered and the host
	// (reply_code 0: none). A delivered recipient is now notified when
	// it is owed nothing more; under the old rules it never was.
	`
ALTER TABLE queue ADD COLUMN ret TEXT NOT NULL DEFAULT '';
ALTER TABLE queue ADD COLUMN envid TEXT NOT NULL DEFAULT '';

ALTER TABLE queue_recipients ADD COLUMN notify TEXT NOT NULL DEFAULT '';
ALTER TABLE queue_recipients ADD COLUMN orcpt_type TEXT NOT NULL DEFAULT '';
ALTER TABLE queue_recipients ADD COLUMN orcpt TEXT NOT NULL DEFAULT '';
ALTER TABLE queue_recipients ADD COLUMN reply_code INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue_recipients ADD COLUMN reply_status TEXT NOT NULL DEFAULT '';
ALTER TABLE queue_recipients ADD COLUMN reply_text TEXT NOT NULL DEFAULT '';
ALTER TABLE queue_recipients ADD COLUMN reply_command TEXT NOT NULL DEFAULT '';
ALTER TABLE queue_recipients ADD COLUMN reply_host TEXT NOT NULL DEFAULT '';
UPDATE queue_recipients SET notified = 1 WHERE state = 'delivered';
`,
	// Version 7: ACME state and server secrets.
	//
	// acme_values holds internal/acmecert's named blobs (the account key,
	// certificates with their keys, renewal status, challenge responses);
	// acme_locks its lease locks, expires_at in Unix milliseconds; secrets
	// the server's random secrets by purpose (store.Shared).
	`
CREATE TABLE acme_values (
	name       TEXT PRIMARY KEY,
	data       BLOB NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE acme_locks (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE secrets (
	purpose    TEXT PRIMARY KEY,
	value      BLOB NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;
`,
	// Version 8: DKIM keys.
	//
	// The DKIM signing keys of each domain (mailauth.KeyStore): the
	// selector under which the public key is published (RFC 6376 section
	// 3.6.2.1), the key type (rsa, ed25519), the private key as PKCS #8
	// PEM, created_at in Unix seconds, retired_at 0 while the key signs.
	// No reference to domains: keys outlive a deleted domain.
	`
CREATE TABLE dkim_keys (
	domain      TEXT NOT NULL,
	selector    TEXT NOT NULL,
	algorithm   TEXT NOT NULL CHECK (algorithm IN ('rsa', 'ed25519')),
	private_key BLOB NOT NULL,
	created_at  INTEGER NOT NULL,
	retired_at  INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (domain, selector)
) STRICT;
`,
	// Version 9: the spam score above which
	// mail to a user is refused rather than delivered marked; NULL:
	// never refused for its score.
	`
ALTER TABLE users ADD COLUMN spam_reject_score REAL;
`,
	// Version 10: imported unique-ids and sizes.
	//
	// uidl is the POP3 unique-id a message kept from the server it was
	// imported from (NULL: the store's own, from the UID validity and the
	// UID), unique in its mailbox; list_size the size that server's LIST
	// showed (NULL: size).
	`
ALTER TABLE messages ADD COLUMN uidl TEXT;
ALTER TABLE messages ADD COLUMN list_size INTEGER;
CREATE UNIQUE INDEX messages_uidl ON messages (user_id, uidl) WHERE uidl IS NOT NULL;
`,
}
