package config

import "fmt"

// Auth tunes what every login (POP3 and SMTP AUTH alike) goes through: a
// cache of recent successful verifications, a penalty that grows with
// failures per client address (IPv6 /64) and per login name, and a
// temporary ban after repeated failures.
type Auth struct {
	// CacheTTL: seconds a verified password is remembered (0: no cache).
	CacheTTL int `toml:"cache_ttl"`
	// Penalty switches the failed-login penalty and bans on or off.
	Penalty bool `toml:"penalty"`
	// IPBanAfter failures from one address ban it for BanTime seconds.
	IPBanAfter int `toml:"ip_ban_after"`
	// NameBanAfter failures for one login name ban that name.
	NameBanAfter int `toml:"name_ban_after"`
	BanTime      int `toml:"ban_time"`
}

func defaultAuth() Auth {
	return Auth{CacheTTL: 300, Penalty: true, IPBanAfter: 10, NameBanAfter: 30, BanTime: 900}
}

func (a Auth) validate() error {
	for key, v := range map[string]int{"auth.cache_ttl": a.CacheTTL, "auth.ip_ban_after": a.IPBanAfter,
		"auth.name_ban_after": a.NameBanAfter, "auth.ban_time": a.BanTime} {
		if v < 0 {
			return fmt.Errorf("key %q: must not be negative, got %d", key, v)
		}
	}
	return nil
}
