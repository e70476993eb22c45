package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memStats is the memory of a process tree, summed over its processes.
type memStats struct {
	Processes int
	RSS       int64 // octets; shared pages counted in every process
	PSS       int64 // octets; shared pages divided among their users
}

// treeMemory sums the memory of root and all its descendants, from
// /proc/PID/smaps_rollup.
func treeMemory(root int) (memStats, error) {
	pids, err := descendants(root)
	if err != nil {
		return memStats{}, err
	}
	var m memStats
	for _, pid := range pids {
		rss, pss, err := processMemory(pid)
		if err != nil {
			continue // ended meanwhile
		}
		m.Processes++
		m.RSS += rss
		m.PSS += pss
	}
	if m.Processes == 0 {
		return m, fmt.Errorf("process %d: not running", root)
	}
	return m, nil
}

// descendants returns root and every process below it.
func descendants(root int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := make(map[int][]int)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, err := parentOf(pid)
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// parentOf reads the parent PID from /proc/PID/stat ("pid (comm) state
// ppid ...", where comm may contain spaces and parentheses).
func parentOf(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("malformed stat")
	}
	return strconv.Atoi(f[1])
}

// processMemory returns a process's resident and proportional set sizes.
func processMemory(pid int) (rss, pss int64, err error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "Rss":
			rss = n * 1024
		case "Pss":
			pss = n * 1024
		}
	}
	return rss, pss, sc.Err()
}

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// treeCPU returns the CPU time, user and system, that root and its
// descendants have used, including that of descendants which ended and
// were waited for (cutime, cstime): the whole cost of a multi-process
// server such as Dovecot or Postfix.
func treeCPU(root int) (float64, error) {
	pids, err := descendants(root)
	if err != nil {
		return 0, err
	}
	var ticks int64
	found := false
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		// After "pid (comm)": state ppid ... utime(14) stime(15) cutime(16)
		// cstime(17), counted from 1 with pid.
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		for _, k := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += v
		}
		found = true
	}
	if !found {
		return 0, fmt.Errorf("process %d: not running", root)
	}
	return float64(ticks) / clockTicks, nil
}
