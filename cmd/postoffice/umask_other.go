//go:build !unix

package main

// privateUmask: no umask outside Unix; files keep the modes they are
// created with.
func privateUmask() {}
