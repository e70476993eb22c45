// Package bufpool lends the 32 KiB buffered readers that the intake reads
// each message through several times (the canonical form of every spool,
// the DKIM checks, the signer): one allocated and cleared per pass was a
// large share of the intake's garbage (issue 21, fifth pass, in
// bench/RESULTS.md).
package bufpool

import (
	"bufio"
	"io"
	"sync"
)

// Size is the size of the readers' buffers.
const Size = 32 * 1024

var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, Size) }}

// Reader returns a buffered reader of r, with a buffer of Size octets.
// Give it back with Put once nothing reads from it any more.
func Reader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// Put gives br back for reuse, dropping its source. br, and every slice
// its Peek or ReadSlice returned, must not be used after it.
func Put(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}
