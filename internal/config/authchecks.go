package config

// AuthChecks configures the checks of mail that other hosts send to the
// MX service (port 25): SPF (RFC 7208) at MAIL, DKIM verification (RFC
// 6376) and DMARC (RFC 7489) at the end of the data, reported in an
// Authentication-Results field (RFC 8601). Mail from authenticated
// sessions and from the deliver command is not checked.
type AuthChecks struct {
	Enabled bool `toml:"enabled" default:"true" doc:"check SPF, DKIM and DMARC of mail arriving on the MX service (unauthenticated sessions) and add an Authentication-Results field"`
	// DMARCReject: RFC 7489 section 6.7 leaves the receiver free to apply
	// a p=reject policy as quarantine.
	DMARCReject string `toml:"dmarc_reject" default:"reject" check:"oneof=reject|quarantine" doc:"what a failing message of a p=reject domain gets: reject (550 5.7.1 at the end of data) or quarantine (delivered with X-Spam: yes)"`
	// AuthServID: RFC 8601 section 2.5, the name of the ADMD's checking
	// service; a cluster's nodes may share one.
	AuthServID string `toml:"authserv_id" check:"name" doc:"name of this checking service in Authentication-Results; such fields of incoming mail are removed (empty: the hostname of [smtp])"`
}
