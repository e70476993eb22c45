package autoconfig

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// Thunderbird returns the autoconfig document for domain (format:
// https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat,
// config-v1.1.xml): each POP3 listener as an incomingServer of type pop3
// and each submission listener as an outgoingServer of type smtp,
// implicit TLS first (Thunderbird takes the first it can use), socketType
// SSL or STARTTLS, authentication password-cleartext (PLAIN or LOGIN
// inside TLS), the full address as user name (%EMAILADDRESS%, replaced by
// the client).
func (h Host) Thunderbird(domain string) []byte {
	type server struct {
		Type           string `xml:"type,attr"`
		Hostname       string `xml:"hostname"`
		Port           int    `xml:"port"`
		SocketType     string `xml:"socketType"`
		Username       string `xml:"username"`
		Authentication string `xml:"authentication"`
	}
	srv := func(typ string, l Listener) server {
		st := "SSL"
		if l.Security == STARTTLS {
			st = "STARTTLS"
		}
		return server{typ, h.Hostname, l.Port, st, "%EMAILADDRESS%", "password-cleartext"}
	}
	doc := struct {
		XMLName  xml.Name `xml:"clientConfig"`
		Version  string   `xml:"version,attr"`
		Provider struct {
			ID               string   `xml:"id,attr"`
			Domain           []string `xml:"domain"`
			DisplayName      string   `xml:"displayName"`
			DisplayShortName string   `xml:"displayShortName"`
			Incoming         []server `xml:"incomingServer"`
			Outgoing         []server `xml:"outgoingServer"`
		} `xml:"emailProvider"`
	}{Version: "1.1"}
	p := &doc.Provider
	p.ID, p.Domain = domain, []string{domain}
	p.DisplayName, p.DisplayShortName = h.displayName(), domain
	for _, l := range preferred(h.POP3) {
		p.Incoming = append(p.Incoming, srv("pop3", l))
	}
	for _, l := range preferred(h.Submission) {
		p.Outgoing = append(p.Outgoing, srv("smtp", l))
	}
	return marshalXML(doc)
}

func marshalXML(v any) []byte {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	e := xml.NewEncoder(&b)
	e.Indent("", "  ")
	if err := e.Encode(v); err != nil {
		panic(err) // fixed structs of strings and ints always encode
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// The namespaces of Outlook's autodiscover (POX) request and response.
const (
	AutodiscoverRequestNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
	AutodiscoverResponseNS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	AutodiscoverOutlookNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

// Autodiscover returns Outlook's POX autodiscover answer for address
// (Exchange's "POX Autodiscover XML elements" and "Plan to automatically
// configure user accounts in Outlook 2010"): Account with AccountType
// email and Action settings, then one Protocol of Type POP3 and one of
// Type SMTP, each the preferred listener (implicit TLS first; Outlook
// takes one per type), with LoginName the address, SPA off (no NTLM),
// AuthRequired on, and Encryption SSL (implicit TLS) or TLS (STARTTLS),
// which overrides the older SSL element that is also set for clients
// that know only it.
func (h Host) Autodiscover(address string) []byte {
	type protocol struct {
		Type           string `xml:"Type"`
		Server         string `xml:"Server"`
		Port           int    `xml:"Port"`
		LoginName      string `xml:"LoginName"`
		DomainRequired string `xml:"DomainRequired"`
		SPA            string `xml:"SPA"`
		SSL            string `xml:"SSL"`
		Encryption     string `xml:"Encryption"`
		AuthRequired   string `xml:"AuthRequired"`
		UsePOPAuth     string `xml:"UsePOPAuth,omitempty"`
		SMTPLast       string `xml:"SMTPLast,omitempty"`
	}
	proto := func(typ string, l Listener) protocol {
		enc := "SSL"
		if l.Security == STARTTLS {
			enc = "TLS"
		}
		p := protocol{Type: typ, Server: h.Hostname, Port: l.Port, LoginName: address,
			DomainRequired: "off", SPA: "off", SSL: "on", Encryption: enc, AuthRequired: "on"}
		if typ == "SMTP" {
			p.UsePOPAuth, p.SMTPLast = "on", "off"
		}
		return p
	}
	type account struct {
		AccountType string     `xml:"AccountType"`
		Action      string     `xml:"Action"`
		Protocol    []protocol `xml:"Protocol"`
	}
	acct := account{AccountType: "email", Action: "settings"}
	if ls := preferred(h.POP3); len(ls) > 0 {
		acct.Protocol = append(acct.Protocol, proto("POP3", ls[0]))
	}
	if ls := preferred(h.Submission); len(ls) > 0 {
		acct.Protocol = append(acct.Protocol, proto("SMTP", ls[0]))
	}
	doc := struct {
		XMLName  xml.Name `xml:"Autodiscover"`
		NS       string   `xml:"xmlns,attr"`
		Response struct {
			NS   string `xml:"xmlns,attr"`
			User struct {
				DisplayName string `xml:"DisplayName"`
			} `xml:"User"`
			Account account `xml:"Account"`
		} `xml:"Response"`
	}{NS: AutodiscoverResponseNS}
	doc.Response.NS = AutodiscoverOutlookNS
	doc.Response.User.DisplayName = address
	doc.Response.Account = acct
	return marshalXML(doc)
}

// AutodiscoverError returns a POX error answer (code 500: the address is
// not found; 600: invalid request).
func AutodiscoverError(code int, message string) []byte {
	doc := struct {
		XMLName  xml.Name `xml:"Autodiscover"`
		NS       string   `xml:"xmlns,attr"`
		Response struct {
			Error struct {
				ErrorCode int    `xml:"ErrorCode"`
				Message   string `xml:"Message"`
				DebugData string `xml:"DebugData"`
			} `xml:"Error"`
		} `xml:"Response"`
	}{NS: AutodiscoverResponseNS}
	doc.Response.Error.ErrorCode, doc.Response.Error.Message = code, message
	return marshalXML(doc)
}

// MobileConfig returns an unsigned Apple configuration profile that sets
// up address as a POP account (a Configuration profile with one
// com.apple.mail.managed payload, Apple's "Mail" device management
// payload): the preferred POP3 and submission listeners (UseSSL means TLS,
// implicit or by STARTTLS after the port), password authentication, the
// address as user name for both, one password for both. The password is
// not in the profile: the device asks for it on installation. Identifiers
// and UUIDs are derived from the hostname and address, so installing the
// profile again replaces it. h must pass Check.
func (h Host) MobileConfig(address string) []byte {
	sum := sha256.Sum256([]byte(h.Hostname + "\x00" + address))
	id := reverseDNS(h.Hostname) + ".postoffice.mail." + hex.EncodeToString(sum[:8])
	profileUUID := uuid.NewSHA1(uuid.NameSpaceURL, []byte("postoffice:profile:"+h.Hostname+":"+address))
	payloadUUID := uuid.NewSHA1(uuid.NameSpaceURL, []byte("postoffice:pop:"+h.Hostname+":"+address))

	var b plistWriter
	b.WriteString(xml.Header)
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString(`<plist version="1.0">` + "\n<dict>\n")
	b.key("PayloadContent")
	b.WriteString("<array>\n<dict>\n")
	b.str("EmailAccountDescription", address)
	b.str("EmailAccountType", "EmailTypePOP")
	b.str("EmailAddress", address)
	in := preferred(h.POP3)[0]
	b.str("IncomingMailServerAuthentication", "EmailAuthPassword")
	b.str("IncomingMailServerHostName", h.Hostname)
	b.integer("IncomingMailServerPortNumber", in.Port)
	b.boolean("IncomingMailServerUseSSL", true)
	b.str("IncomingMailServerUsername", address)
	if out := preferred(h.Submission); len(out) > 0 {
		b.str("OutgoingMailServerAuthentication", "EmailAuthPassword")
		b.str("OutgoingMailServerHostName", h.Hostname)
		b.integer("OutgoingMailServerPortNumber", out[0].Port)
		b.boolean("OutgoingMailServerUseSSL", true)
		b.str("OutgoingMailServerUsername", address)
		b.boolean("OutgoingPasswordSameAsIncomingPassword", true)
	}
	b.str("PayloadDescription", "POP account "+address+" on "+h.Hostname)
	b.str("PayloadDisplayName", address)
	b.str("PayloadIdentifier", id+".pop")
	b.str("PayloadType", "com.apple.mail.managed")
	b.str("PayloadUUID", strings.ToUpper(payloadUUID.String()))
	b.integer("PayloadVersion", 1)
	b.WriteString("</dict>\n</array>\n")
	b.str("PayloadDescription", "Sets up the mail account "+address+".")
	b.str("PayloadDisplayName", "Mail: "+address)
	b.str("PayloadIdentifier", id)
	b.str("PayloadOrganization", h.displayName())
	b.boolean("PayloadRemovalDisallowed", false)
	b.str("PayloadType", "Configuration")
	b.str("PayloadUUID", strings.ToUpper(profileUUID.String()))
	b.integer("PayloadVersion", 1)
	b.WriteString("</dict>\n</plist>\n")
	return b.Bytes()
}

// reverseDNS turns mail.example.com into com.example.mail.
func reverseDNS(host string) string {
	labels := strings.Split(strings.ToLower(strings.TrimSuffix(host, ".")), ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".")
}

// plistWriter writes the XML property list elements of a dict.
type plistWriter struct{ bytes.Buffer }

func (w *plistWriter) key(k string) {
	w.WriteString("<key>")
	xml.EscapeText(w, []byte(k))
	w.WriteString("</key>\n")
}

func (w *plistWriter) str(k, v string) {
	w.key(k)
	w.WriteString("<string>")
	xml.EscapeText(w, []byte(v))
	w.WriteString("</string>\n")
}

func (w *plistWriter) integer(k string, v int) {
	w.key(k)
	fmt.Fprintf(w, "<integer>%d</integer>\n", v)
}

func (w *plistWriter) boolean(k string, v bool) {
	w.key(k)
	if v {
		w.WriteString("<true/>\n")
	} else {
		w.WriteString("<false/>\n")
	}
}
