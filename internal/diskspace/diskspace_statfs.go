//go:build linux || darwin || freebsd

package diskspace

import (
	"math"

	"golang.org/x/sys/unix"
)

func available(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	n := uint64(st.Bavail) * uint64(st.Bsize)
	if n > math.MaxInt64 {
		return math.MaxInt64, nil
	}
	return int64(n), nil
}
