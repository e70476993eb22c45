package config

// Auth tunes what every login (POP3 and SMTP AUTH alike) goes through: a
// cache of recent successful verifications, a penalty that grows with
// failures per client address (IPv6 /64) and per login name, and a
// temporary ban after repeated failures.
type Auth struct {
	CacheTTL     Duration `toml:"cache_ttl" default:"5m" check:"nonneg" doc:"how long a verified password is remembered, so polling clients skip the slow hash (0: no cache)"`
	Penalty      bool     `toml:"penalty" default:"true" doc:"slow down and then ban repeated failed logins (POP3 and SMTP AUTH)"`
	IPBanAfter   int      `toml:"ip_ban_after" default:"10" check:"nonneg" doc:"failed logins from one address (IPv6: /64) before it is banned"`
	NameBanAfter int      `toml:"name_ban_after" default:"30" check:"nonneg" doc:"failed logins for one login name, from anywhere, before the name is banned"`
	BanTime      Duration `toml:"ban_time" default:"15m" check:"nonneg" doc:"how long a ban lasts"`
}
