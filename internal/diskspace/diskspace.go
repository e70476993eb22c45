// Package diskspace tells how much room is left on a file system, so
// that intake can stop while there is still room for what frees space
// (POP3 deletions, whose commit needs a little).
package diskspace

import "errors"

// ErrUnsupported: the platform cannot tell; callers skip their check.
var ErrUnsupported = errors.New("diskspace: free space unknown on this platform")

// Available returns the octets an unprivileged process may still write on
// the file system that holds path (statfs f_bavail: the blocks reserved
// for root do not count, since serve should not run as root).
func Available(path string) (int64, error) { return available(path) }
