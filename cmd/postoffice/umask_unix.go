//go:build unix

package main

import "syscall"

// privateUmask makes every file and directory the process creates
// owner-only whatever the umask it inherited (as Postfix and Dovecot do
// for theirs): the database and its -wal and -shm files, message files,
// the TLS key, the control socket. The code that creates them asks for
// owner-only modes too; this covers what libraries create.
func privateUmask() { syscall.Umask(0o077) }
