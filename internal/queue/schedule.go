package queue

import "time"

// Backoff returns how long to wait after the attempt-th failed attempt
// (1 for the first) before the next one: initial, then doubling, capped at
// max. RFC 5321 section 4.5.4.1 asks for a retry interval of at least 30
// minutes on a busy server; the default schedule starts lower (one minute,
// as greylisting expects) and reaches hours after a few attempts:
// 1, 2, 4, 8, 16, 32, 64, 128 minutes, then every 4 hours.
func Backoff(attempt int, initial, max time.Duration) time.Duration {
	if initial <= 0 {
		initial = time.Second
	}
	if max < initial {
		max = initial
	}
	d := initial
	for i := 1; i < attempt; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

// NextAttempt returns when to try again after the attempt-th failed
// attempt at now, or ok == false when the message's lifetime is over
// (deadline reached) and the recipients are to be returned to the sender.
// The last attempt is made at the deadline itself rather than never.
func NextAttempt(now, deadline time.Time, attempt int, initial, max time.Duration) (next time.Time, ok bool) {
	if !now.Before(deadline) {
		return time.Time{}, false
	}
	next = now.Add(Backoff(attempt, initial, max))
	if next.After(deadline) {
		next = deadline
	}
	return next, true
}
