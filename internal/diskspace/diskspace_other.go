//go:build !(linux || darwin || freebsd)

package diskspace

func available(string) (int64, error) { return 0, ErrUnsupported }
