package main

import (
	"bufio"
	"bytes"
	"errors"
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

// descendants returns root and every process below it: from the
// children files of each process's threads (/proc/PID/task/TID/children,
// which lists the children a thread started) where the kernel has them,
// else from the parent of every process on the machine. The children
// files cost the size of the tree; the scan reads every process's stat,
// and peakMemory calls this five times a second while the server runs.
func descendants(root int) ([]int, error) {
	out := []int{root}
	for i := 0; i < len(out); i++ {
		kids, err := childrenOf(out[i])
		if errors.Is(err, errNoChildrenFile) {
			return scanDescendants(root)
		}
		if err != nil {
			if i == 0 {
				return nil, err
			}
			continue // ended meanwhile
		}
		out = append(out, kids...)
	}
	return out, nil
}

// errNoChildrenFile: the kernel has no /proc/PID/task/TID/children
// (built without CONFIG_PROC_CHILDREN).
var errNoChildrenFile = errors.New("no children file")

// childrenOf returns the children of every thread of pid.
func childrenOf(pid int) ([]int, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "children"))
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(filepath.Join(dir, t.Name())); serr == nil {
				return nil, errNoChildrenFile // the thread is there, its file is not
			}
			continue // the thread ended meanwhile
		}
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// scanDescendants is descendants from the parent of every process.
func scanDescendants(root int) ([]int, error) {
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

// residentSize returns a process's resident set size from
// /proc/PID/statm (its second field, in pages): the kernel's counters,
// read without walking the process's mappings as smaps_rollup does.
func residentSize(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "statm"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("malformed statm")
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
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
	u, err := treeUsage(root)
	return u.cpu, err
}

// procUsage is what treeUsage adds up.
type procUsage struct {
	cpu    float64 // seconds, user and system
	minflt int64   // minor page faults: memory mapped in without I/O
}

// treeUsage returns the CPU time and the minor page faults of root and
// its descendants, with those of descendants which ended and were waited
// for (cutime, cstime, cminflt).
func treeUsage(root int) (procUsage, error) {
	pids, err := descendants(root)
	if err != nil {
		return procUsage{}, err
	}
	var ticks, faults int64
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
		// proc(5), after "pid (comm)", counted from 1 with pid: minflt(10)
		// cminflt(11) ... utime(14) stime(15) cutime(16) cstime(17); f[0]
		// is state(3).
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		for _, k := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += v
		}
		for _, k := range []int{7, 8} {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			faults += v
		}
		found = true
	}
	if !found {
		return procUsage{}, fmt.Errorf("process %d: not running", root)
	}
	return procUsage{cpu: float64(ticks) / clockTicks, minflt: faults}, nil
}
