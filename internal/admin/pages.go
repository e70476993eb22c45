package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/dnsrecords"
	"github.com/postoffice-mail/postoffice/internal/journal"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// Dashboard.

type dashData struct {
	Charts   chartsData
	Status   control.Status
	Certs    []certRow
	Uptime   time.Duration
	Today    map[string]int64
	Recent   []store.JournalEntry
	Users    int
	Domains  int
	QueueErr string
}

func startOfDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	st, err := c.ctl.Status(ctx)
	d := dashData{Status: st}
	if err != nil {
		d.QueueErr = err.Error()
	}
	if !st.Started.IsZero() {
		d.Uptime = c.opt.Now().Sub(st.Started)
	}
	counts, err := c.st.CountJournal(ctx, startOfDay(c.opt.Now()))
	if err != nil {
		c.serverError(w, r, s, err)
		return
	}
	d.Today = map[string]int64{}
	for ev, n := range counts {
		d.Today[string(ev)] = n
	}
	if d.Charts, err = c.buildCharts(ctx, r.FormValue("range"), c.opt.Now()); err != nil {
		c.serverError(w, r, s, err)
		return
	}
	d.Recent, _ = c.st.QueryJournal(ctx, store.JournalQuery{Limit: 8})
	users, _ := c.st.ListUsers(ctx)
	domains, _ := c.st.ListDomains(ctx)
	d.Users, d.Domains = len(users), len(domains)
	for _, cert := range st.Certificates {
		d.Certs = append(d.Certs, certRow{Certificate: cert, DaysLeft: int(cert.NotAfter.Sub(c.opt.Now()).Hours() / 24), Warning: cert.Warning(c.opt.Now())})
	}
	c.render(w, r, http.StatusOK, "dashboard", s, page{Title: "Dashboard", Nav: "dashboard", Data: d})
}

// certRow is one name's certificate on the dashboard.
type certRow struct {
	control.Certificate
	DaysLeft int
	Warning  string
}

func (c *Console) serviceAction(w http.ResponseWriter, r *http.Request, s *session) {
	name, action := r.PathValue("name"), r.PathValue("action")
	var notes []string
	var err error
	switch action {
	case "start":
		notes, err = c.ctl.StartService(r.Context(), name)
	case "stop":
		notes, err = c.ctl.StopService(r.Context(), name, control.DefaultGrace)
	default:
		http.NotFound(w, r)
		return
	}
	c.log.Info("service "+action, "admin", s.admin, "service", name, "err", err)
	c.flashResult(s, notes, err)
	redirect(w, r, "/")
}

func (c *Console) flashResult(s *session, notes []string, err error) {
	for _, n := range notes {
		c.addFlash(s, "ok", "%s", n)
	}
	if err != nil {
		c.addFlash(s, "error", "%s", err)
	}
}

func (c *Console) reload(w http.ResponseWriter, r *http.Request, s *session) {
	notes, err := c.ctl.Reload(r.Context())
	c.log.Info("reload", "admin", s.admin, "err", err)
	c.flashResult(s, notes, err)
	redirect(w, r, safeNext(r.PostFormValue("back")))
}

// Users.

type userRow struct {
	store.User
	Messages int
	Bytes    int64
	Extra    []string
}

type usersData struct {
	Q     string
	Rows  []userRow
	Total int
	Form  addUserForm
}

type addUserForm struct {
	Address, Name, Quota string
}

func (c *Console) users(w http.ResponseWriter, r *http.Request, s *session) {
	c.showUsers(w, r, s, http.StatusOK, "", addUserForm{})
}

func (c *Console) showUsers(w http.ResponseWriter, r *http.Request, s *session, status int, errMsg string, form addUserForm) {
	ctx := r.Context()
	q := strings.ToLower(strings.TrimSpace(r.FormValue("q")))
	users, err := c.st.ListUsers(ctx)
	if err != nil {
		c.serverError(w, r, s, err)
		return
	}
	d := usersData{Q: q, Total: len(users), Form: form}
	for _, u := range users {
		row := userRow{User: u}
		row.Extra, _ = c.st.ListAddresses(ctx, u.ID)
		if q != "" && !strings.Contains(strings.ToLower(u.Address+" "+u.DisplayName+" "+strings.Join(row.Extra, " ")), q) {
			continue
		}
		if row.Messages, row.Bytes, err = c.st.Usage(ctx, u.ID); err != nil {
			c.serverError(w, r, s, err)
			return
		}
		d.Rows = append(d.Rows, row)
	}
	c.render(w, r, status, "users", s, page{Title: "Users", Nav: "users", Error: errMsg, Data: d})
}

// reason is the last part of a validation error ("address "x": must
// contain exactly one @" -> "must contain exactly one @"), which the page
// shows after the value it names.
func reason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// parseQuota reads a quota with config.ParseSize (500M, 2G, bytes);
// empty or 0 is unlimited.
func parseQuota(in string) (int64, error) {
	if strings.TrimSpace(in) == "" {
		return 0, nil
	}
	n, err := config.ParseSize(in)
	if err != nil {
		return 0, fmt.Errorf("quota: %v (0 or empty for unlimited)", err)
	}
	return int64(n), nil
}

func (c *Console) newPassword(r *http.Request) (string, error) {
	pw, pw2 := r.PostFormValue("password"), r.PostFormValue("password2")
	switch {
	case pw == "":
		return "", errors.New("the password must not be empty")
	case pw != pw2:
		return "", errors.New("the two passwords differ")
	}
	return directory.HashPassword(pw)
}

func (c *Console) addUser(w http.ResponseWriter, r *http.Request, s *session) {
	form := addUserForm{Address: strings.TrimSpace(r.PostFormValue("address")), Name: strings.TrimSpace(r.PostFormValue("name")),
		Quota: strings.TrimSpace(r.PostFormValue("quota"))}
	fail := func(format string, a ...any) {
		c.showUsers(w, r, s, http.StatusUnprocessableEntity, fmt.Sprintf(format, a...), form)
	}
	addr, err := address.Normalize(form.Address)
	if err != nil {
		fail("%q is not a valid address: %s", form.Address, reason(err))
		return
	}
	quota, err := parseQuota(form.Quota)
	if err != nil {
		fail("%v", err)
		return
	}
	hash, err := c.newPassword(r)
	if err != nil {
		fail("%v", err)
		return
	}
	_, err = c.st.AddUser(r.Context(), store.User{Address: addr, DisplayName: form.Name, PasswordHash: hash, Enabled: true, QuotaBytes: quota})
	switch {
	case errors.Is(err, store.ErrExists):
		fail("%s already exists (as a user, an extra address or an alias)", addr)
		return
	case err != nil:
		fail("%v", err)
		return
	}
	c.log.Info("user added", "admin", s.admin, "user", addr)
	c.addFlash(s, "ok", "Added user %s.", addr)
	// Its domain may be new: certificates for its names.
	if _, err := c.ctl.DomainsChanged(r.Context()); err != nil {
		c.log.Warn("domains changed", "err", err)
	}
	redirect(w, r, "/users")
}

type userData struct {
	User          store.User
	Messages      int
	Bytes         int64
	Extra         []string
	Recent        []store.JournalEntry
	ServerDelay   int
	ServerExpire  string
	DelaySeconds  string
	ExpireValue   string
	DelayMode     string
	ExpireMode    string
	QuotaText     string
	NewExtraValue string
	// SpamScore is the user's spam reject score as a form shows it, ""
	// for none.
	SpamScore string
	// ProfileLink is the link to the user's Apple profile, until
	// ProfileExpires; ProfileErr why there is none.
	ProfileLink    string
	ProfileExpires time.Time
	ProfileErr     string
}

func (c *Console) findUser(w http.ResponseWriter, r *http.Request, s *session) (store.User, bool) {
	addr := r.PathValue("address")
	u, err := c.st.UserByAddress(r.Context(), addr)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		c.render(w, r, http.StatusNotFound, "error", s, page{Title: "No such user", Nav: "users", Error: "There is no user " + addr + "."})
		return u, false
	}
	if err != nil {
		c.serverError(w, r, s, err)
		return u, false
	}
	return u, true
}

func (c *Console) user(w http.ResponseWriter, r *http.Request, s *session) {
	u, ok := c.findUser(w, r, s)
	if !ok {
		return
	}
	if u.Address != r.PathValue("address") {
		redirect(w, r, "/users/"+u.Address) // an extra address, or case
		return
	}
	c.showUser(w, r, s, u, http.StatusOK, "")
}

func (c *Console) showUser(w http.ResponseWriter, r *http.Request, s *session, u store.User, status int, errMsg string) {
	ctx := r.Context()
	cfg := c.ctl.Config()
	d := userData{User: u, ServerDelay: int(time.Duration(cfg.POP3.LoginDelay) / time.Second), ServerExpire: cfg.POP3.Expire.String(), DelayMode: "default", ExpireMode: "default"}
	var err error
	if d.Messages, d.Bytes, err = c.st.Usage(ctx, u.ID); err != nil {
		c.serverError(w, r, s, err)
		return
	}
	d.Extra, _ = c.st.ListAddresses(ctx, u.ID)
	d.Recent, _ = c.st.QueryJournal(ctx, store.JournalQuery{User: u.Address, Limit: 10})
	if u.LoginDelay != nil {
		d.DelayMode, d.DelaySeconds = "custom", strconv.FormatInt(int64(*u.LoginDelay/time.Second), 10)
	}
	if u.SpamRejectScore != nil {
		d.SpamScore = strconv.FormatFloat(*u.SpamRejectScore, 'g', -1, 64)
	}
	if u.Expire != nil {
		if *u.Expire < 0 {
			d.ExpireMode = "never"
		} else {
			d.ExpireMode, d.ExpireValue = "custom", config.ExpireAfter(*u.Expire).String()
		}
	}
	if u.QuotaBytes > 0 {
		d.QuotaText = config.Size(u.QuotaBytes).String()
	}
	if d.ProfileLink, d.ProfileExpires, err = c.ctl.ProfileLink(ctx, u.Address); err != nil {
		d.ProfileErr = err.Error()
	}
	c.render(w, r, status, "user", s, page{Title: u.Address, Nav: "users", Error: errMsg, Data: d})
}

func (c *Console) userAction(w http.ResponseWriter, r *http.Request, s *session) {
	u, ok := c.findUser(w, r, s)
	if !ok {
		return
	}
	action := r.PathValue("action")
	change, ok := userActions[action]
	if !ok {
		http.NotFound(w, r)
		return
	}
	done, err := change(c, r, s, &u)
	if err != nil {
		// The page shows what was asked (u as changed) with the reason.
		c.showUser(w, r, s, u, http.StatusUnprocessableEntity, err.Error())
		return
	}
	c.addFlash(s, "ok", "%s", done)
	back := "/users/" + u.Address
	switch action {
	case "enable", "disable":
		back = safeNext(r.PostFormValue("back"))
	case "delete":
		back = "/users"
	}
	if action != "delete" {
		c.log.Info("user changed", "admin", s.admin, "user", u.Address, "action", action)
	}
	redirect(w, r, back)
}

// A userChange applies one action of a user's page to u and saves it. It
// returns what to tell the operator, or an error whose text is shown on
// the page.
type userChange func(c *Console, r *http.Request, s *session, u *store.User) (string, error)

// notice is a reason shown to the operator, as written.
type notice string

func (n notice) Error() string { return string(n) }

func noticef(format string, a ...any) error { return notice(fmt.Sprintf(format, a...)) }

// userActions are the actions of a user's page, by the name in its path.
var userActions = map[string]userChange{
	"password":    (*Console).userPassword,
	"profile":     (*Console).userProfile,
	"enable":      (*Console).userEnabled,
	"disable":     (*Console).userEnabled,
	"policy":      (*Console).userPolicy,
	"spam":        (*Console).userSpam,
	"address-add": (*Console).userAddAddress,
	"address-del": (*Console).userDeleteAddress,
	"delete":      (*Console).userDelete,
}

func (c *Console) userPassword(r *http.Request, _ *session, u *store.User) (string, error) {
	hash, err := c.newPassword(r)
	if err != nil {
		return "", err
	}
	u.PasswordHash = hash
	if err := c.st.UpdateUser(r.Context(), *u); err != nil {
		return "", err
	}
	return fmt.Sprintf("Changed the password of %s.", u.Address), nil
}

func (c *Console) userProfile(r *http.Request, _ *session, u *store.User) (string, error) {
	quota, err := parseQuota(r.PostFormValue("quota"))
	if err != nil {
		return "", err
	}
	u.DisplayName = strings.TrimSpace(r.PostFormValue("name"))
	u.QuotaBytes = quota
	u.Enabled = r.PostFormValue("enabled") == "on"
	if err := c.st.UpdateUser(r.Context(), *u); err != nil {
		return "", err
	}
	return fmt.Sprintf("Saved %s.", u.Address), nil
}

// userEnabled is "enable" and "disable".
func (c *Console) userEnabled(r *http.Request, _ *session, u *store.User) (string, error) {
	action := r.PathValue("action")
	u.Enabled = action == "enable"
	if err := c.st.UpdateUser(r.Context(), *u); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s is now %sd.", u.Address, action), nil
}

// userPolicy sets the user's own POP3 login delay and expire, or gives
// it the server's.
func (c *Console) userPolicy(r *http.Request, _ *session, u *store.User) (string, error) {
	switch r.PostFormValue("delay_mode") {
	case "custom":
		n, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("delay")))
		if err != nil || n < 0 {
			return "", noticef("The login delay must be a whole number of seconds, 0 or more.")
		}
		d := time.Duration(n) * time.Second
		u.LoginDelay = &d
	default:
		u.LoginDelay = nil
	}
	switch r.PostFormValue("expire_mode") {
	case "never":
		d := time.Duration(-1)
		u.Expire = &d
	case "custom":
		e, err := config.ParseExpire(r.PostFormValue("expire"))
		if err != nil || e.IsNever() {
			return "", noticef("Expire: give a number of days (or a duration such as 36h).")
		}
		d := e.Duration()
		u.Expire = &d
	default:
		u.Expire = nil
	}
	if err := c.st.UpdateUser(r.Context(), *u); err != nil {
		return "", err
	}
	return fmt.Sprintf("Saved the POP3 policy of %s.", u.Address), nil
}

// userSpam sets the spam score above which mail to the user is refused
// (empty: never refused, delivered marked).
func (c *Console) userSpam(r *http.Request, _ *session, u *store.User) (string, error) {
	v := strings.TrimSpace(r.PostFormValue("spam_reject_score"))
	if v == "" {
		u.SpamRejectScore = nil
	} else {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || store.SpamScoreProblem(&f) != "" {
			return "", noticef("The spam score must be a number, such as 15 or 7.5, or empty.")
		}
		u.SpamRejectScore = &f
	}
	if err := c.st.UpdateUser(r.Context(), *u); err != nil {
		return "", err
	}
	return fmt.Sprintf("Saved the spam setting of %s.", u.Address), nil
}

func (c *Console) userAddAddress(r *http.Request, _ *session, u *store.User) (string, error) {
	extra, err := address.Normalize(r.PostFormValue("extra"))
	if err != nil {
		return "", noticef("%q is not a valid address: %s", r.PostFormValue("extra"), reason(err))
	}
	if err := c.st.AddAddress(r.Context(), u.ID, extra); err != nil {
		if errors.Is(err, store.ErrExists) {
			return "", noticef("%s already exists (as a user, an extra address or an alias).", extra)
		}
		return "", err
	}
	return fmt.Sprintf("%s now also receives mail for %s.", u.Address, extra), nil
}

func (c *Console) userDeleteAddress(r *http.Request, _ *session, u *store.User) (string, error) {
	extra := r.PostFormValue("extra")
	if err := c.st.DeleteAddress(r.Context(), extra); err != nil {
		return "", err
	}
	return fmt.Sprintf("Removed the address %s.", extra), nil
}

func (c *Console) userDelete(r *http.Request, s *session, u *store.User) (string, error) {
	if r.PostFormValue("confirm") != "on" {
		return "", noticef("Tick the box to confirm that the mailbox of %s and its messages are deleted.", u.Address)
	}
	if err := c.st.DeleteUser(r.Context(), u.ID); err != nil {
		return "", err
	}
	c.log.Info("user deleted", "admin", s.admin, "user", u.Address)
	return fmt.Sprintf("Deleted user %s and its mailbox.", u.Address), nil
}

// Aliases.

type aliasesData struct {
	Aliases []store.Alias
	Address string
	Targets string
}

func (c *Console) aliases(w http.ResponseWriter, r *http.Request, s *session) {
	c.showAliases(w, r, s, http.StatusOK, "", aliasesData{})
}

func (c *Console) showAliases(w http.ResponseWriter, r *http.Request, s *session, status int, errMsg string, d aliasesData) {
	as, err := c.st.ListAliases(r.Context())
	if err != nil {
		c.serverError(w, r, s, err)
		return
	}
	d.Aliases = as
	c.render(w, r, status, "aliases", s, page{Title: "Aliases", Nav: "aliases", Error: errMsg, Data: d})
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

func (c *Console) setAlias(w http.ResponseWriter, r *http.Request, s *session) {
	d := aliasesData{Address: strings.TrimSpace(r.PostFormValue("address")), Targets: r.PostFormValue("targets")}
	targets := splitList(d.Targets)
	if len(targets) == 0 {
		c.showAliases(w, r, s, http.StatusUnprocessableEntity, "Give at least one target address.", d)
		return
	}
	if err := c.st.SetAlias(r.Context(), store.Alias{Address: d.Address, Targets: targets}); err != nil {
		msg := strings.Replace(err.Error(), store.ErrInvalid.Error()+": ", "", 1)
		if errors.Is(err, store.ErrExists) {
			msg = d.Address + " is already a user or an extra address."
		}
		c.showAliases(w, r, s, http.StatusUnprocessableEntity, msg, d)
		return
	}
	c.log.Info("alias set", "admin", s.admin, "alias", d.Address)
	c.addFlash(s, "ok", "Alias %s now delivers to %s.", d.Address, strings.Join(targets, ", "))
	redirect(w, r, "/aliases")
}

func (c *Console) deleteAlias(w http.ResponseWriter, r *http.Request, s *session) {
	addr := r.PostFormValue("address")
	if err := c.st.DeleteAlias(r.Context(), addr); err != nil {
		c.addFlash(s, "error", "%v", err)
	} else {
		c.addFlash(s, "ok", "Deleted alias %s.", addr)
	}
	redirect(w, r, "/aliases")
}

// Domains.

type domainRow struct {
	store.Domain
	Users int
}

type domainsData struct {
	Domains []domainRow
	Name    string
}

func (c *Console) domains(w http.ResponseWriter, r *http.Request, s *session) {
	c.showDomains(w, r, s, http.StatusOK, "", "")
}

func (c *Console) showDomains(w http.ResponseWriter, r *http.Request, s *session, status int, errMsg, name string) {
	ds, err := c.st.ListDomains(r.Context())
	if err != nil {
		c.serverError(w, r, s, err)
		return
	}
	users, _ := c.st.ListUsers(r.Context())
	d := domainsData{Name: name}
	for _, dom := range ds {
		row := domainRow{Domain: dom}
		for _, u := range users {
			if strings.HasSuffix(u.Address, "@"+dom.Name) {
				row.Users++
			}
		}
		d.Domains = append(d.Domains, row)
	}
	c.render(w, r, status, "domains", s, page{Title: "Domains", Nav: "domains", Error: errMsg, Data: d})
}

func (c *Console) addDomain(w http.ResponseWriter, r *http.Request, s *session) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	if err := c.st.AddDomain(r.Context(), name); err != nil {
		msg := strings.Replace(err.Error(), store.ErrInvalid.Error()+": ", "", 1)
		if errors.Is(err, store.ErrExists) {
			msg = name + " is already a domain here."
		}
		c.showDomains(w, r, s, http.StatusUnprocessableEntity, msg, name)
		return
	}
	c.addFlash(s, "ok", "Added domain %s.", strings.ToLower(name))
	c.domainsChanged(r.Context(), s)
	redirect(w, r, "/domains")
}

// domainsChanged tells the server that a domain may be new, for its
// certificates.
func (c *Console) domainsChanged(ctx context.Context, s *session) {
	notes, err := c.ctl.DomainsChanged(ctx)
	if err != nil {
		c.log.Warn("domains changed", "err", err)
	}
	for _, n := range notes {
		c.addFlash(s, "ok", "%s", n)
	}
}

// domainData is a domain's page: the DNS records it needs and, when
// asked, what DNS has.
type domainData struct {
	Name     string
	Zone     string // the records as zone-file lines, to copy
	Records  []dnsrecords.Record
	Findings []dnsrecords.Finding
	Checked  bool
	Problems int
	CheckErr string
}

func (c *Console) domain(w http.ResponseWriter, r *http.Request, s *session) {
	name := strings.ToLower(r.PathValue("name"))
	ctx := r.Context()
	recs, err := c.ctl.DomainRecords(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		c.render(w, r, http.StatusNotFound, "error", s, page{Title: "No such domain", Nav: "domains", Error: "There is no domain " + name + " here."})
		return
	}
	if err != nil {
		c.serverError(w, r, s, err)
		return
	}
	d := domainData{Name: name, Records: recs, Zone: dnsrecords.Zone(recs)}
	if r.FormValue("check") != "" {
		d.Checked = true
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		d.Findings, err = c.ctl.CheckDomain(cctx, name)
		cancel()
		if err != nil {
			d.CheckErr = err.Error()
		}
		for _, f := range d.Findings {
			if f.Status != dnsrecords.OK {
				d.Problems++
			}
		}
	}
	c.render(w, r, http.StatusOK, "domain", s, page{Title: name, Nav: "domains", Data: d})
}

func (c *Console) deleteDomain(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PostFormValue("name")
	if err := c.st.DeleteDomain(r.Context(), name); err != nil {
		c.addFlash(s, "error", "%v", err)
	} else {
		c.addFlash(s, "ok", "Deleted domain %s.", name)
	}
	redirect(w, r, "/domains")
}

// Server attributes.

type settingGroup struct {
	Name     string
	Open     bool // shown unfolded
	Changed  int  // keys set at run time
	InFile   int  // keys set in the file
	Settings []settingRow
}

type settingRow struct {
	config.Setting
	Input  string // the value as typed in the form
	Secret bool
	Source string // config.FromDefault, FromFile or FromOverlay
}

// settingGroups is the configuration by section, with where each value
// comes from.
func (c *Console) settingGroups(open string) ([]settingGroup, *config.Layers) {
	layers, err := c.ctl.ConfigLayers()
	if err != nil {
		layers = nil // the files do not load now: show what is in effect
	}
	var groups []settingGroup
	for _, st := range config.Settings(c.ctl.Config()) {
		table := "general"
		if i := strings.LastIndexByte(st.Key, '.'); i >= 0 {
			table = st.Key[:i]
		}
		if len(groups) == 0 || groups[len(groups)-1].Name != table {
			groups = append(groups, settingGroup{Name: table, Open: table == open})
		}
		row := settingRow{Setting: st, Input: inputText(st), Source: config.FromDefault}
		if layers != nil {
			row.Source = layers.Source(st.Key)
		}
		if strings.Contains(st.Key, "password") {
			row.Secret, row.Input = true, ""
		}
		g := &groups[len(groups)-1]
		switch row.Source {
		case config.FromOverlay:
			g.Changed++
		case config.FromFile:
			g.InFile++
		}
		g.Settings = append(g.Settings, row)
	}
	return groups, layers
}

func (c *Console) settings(w http.ResponseWriter, r *http.Request, s *session) {
	groups, layers := c.settingGroups(r.FormValue("open"))
	d := struct {
		Groups              []settingGroup
		ConfigFile, Overlay string
	}{Groups: groups}
	if layers != nil {
		d.ConfigFile, d.Overlay = layers.File, layers.Overlay
	}
	c.render(w, r, http.StatusOK, "settings", s, page{Title: "Server attributes", Nav: "settings", Data: d})
}

// inputText is a setting's value as an operator would type it.
func inputText(st config.Setting) string {
	switch st.Kind {
	case "string", "expire", "size", "duration":
		if u, err := strconv.Unquote(st.Value); err == nil {
			return u
		}
	case "list":
		v := strings.TrimSuffix(strings.TrimPrefix(st.Value, "["), "]")
		var items []string
		for _, it := range strings.Split(v, ",") {
			if it = strings.TrimSpace(it); it != "" {
				if u, err := strconv.Unquote(it); err == nil {
					it = u
				}
				items = append(items, it)
			}
		}
		return strings.Join(items, ", ")
	}
	return st.Value
}

// setSettings saves one section of the Server attributes page: the keys
// whose value differs from the one in effect change together, at run time
// (config.SetMany), and the server reloads.
func (c *Console) setSettings(w http.ResponseWriter, r *http.Request, s *session) {
	section := r.PostFormValue("section")
	var changes []config.Change
	for _, st := range config.Settings(c.ctl.Config()) {
		table := "general"
		if i := strings.LastIndexByte(st.Key, '.'); i >= 0 {
			table = st.Key[:i]
		}
		if table != section || st.Kind == "table" {
			continue
		}
		v, ok := r.PostForm["v:"+st.Key]
		if !ok {
			continue
		}
		value := strings.TrimSpace(v[0])
		if strings.Contains(st.Key, "password") {
			if value == "" {
				continue // the form never shows a secret: empty keeps it
			}
		} else if value == inputText(st) || sameValue(st, value) {
			continue
		}
		changes = append(changes, config.Change{Key: st.Key, Value: value})
	}
	back := "/settings?open=" + url.QueryEscape(section) + "#section-" + section
	if len(changes) == 0 {
		c.addFlash(s, "ok", "Nothing changed in %s.", sectionName(section))
		redirect(w, r, back)
		return
	}
	notes, err := c.ctl.SetConfig(r.Context(), changes)
	keys := make([]string, len(changes))
	for i, ch := range changes {
		keys[i] = ch.Key
	}
	c.log.Info("settings changed", "admin", s.admin, "keys", strings.Join(keys, ","), "err", err)
	c.flashResult(s, notes, err)
	redirect(w, r, back)
}

// sameValue reports whether value, as typed, is the value st holds
// already: "600" for a duration of "10m".
func sameValue(st config.Setting, value string) bool {
	text, err := config.ValueText(st, value)
	return err == nil && text == st.Value
}

// sectionName is how a section is named on the page.
func sectionName(table string) string {
	if table == "general" {
		return "General"
	}
	return "[" + table + "]"
}

// Outbound queue.

func (c *Console) queue(w http.ResponseWriter, r *http.Request, s *session) {
	q, err := c.st.ListQueue(r.Context())
	if err != nil {
		c.serverError(w, r, s, err)
		return
	}
	status, _ := c.ctl.Status(r.Context())
	running := false
	for _, svc := range status.Services {
		if svc.Name == "queue" {
			running = svc.Running
		}
	}
	c.render(w, r, http.StatusOK, "queue", s, page{Title: "Outbound queue", Nav: "queue",
		Data: struct {
			Messages []store.QueuedMessage
			Running  bool
		}{q, running}})
}

func (c *Console) queueAction(w http.ResponseWriter, r *http.Request, s *session) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 0 {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	action := r.PathValue("action")
	switch action {
	case "retry":
		n, err := c.ctl.QueueRetry(ctx, id)
		if err != nil {
			c.addFlash(s, "error", "Retry: %v", err)
		} else if id == 0 {
			c.addFlash(s, "ok", "%d messages will be tried again now.", n)
		} else {
			c.addFlash(s, "ok", "Message %d will be tried again now.", id)
		}
	case "delete":
		if err := c.st.DeleteQueued(ctx, id); err != nil {
			c.addFlash(s, "error", "Delete: %v", err)
		} else {
			c.addFlash(s, "ok", "Deleted message %d from the queue (no bounce sent).", id)
		}
	case "hold", "release":
		if err := c.st.HoldQueued(ctx, id, action == "hold"); err != nil {
			c.addFlash(s, "error", "%s: %v", action, err)
		} else {
			c.addFlash(s, "ok", "Message %d %s.", id, map[string]string{"hold": "held", "release": "released"}[action])
		}
	default:
		http.NotFound(w, r)
		return
	}
	c.log.Info("queue "+action, "admin", s.admin, "id", id)
	redirect(w, r, "/queue")
}

// Mail journal.

type journalData struct {
	Q, User, Event, Since string
	Entries               []store.JournalEntry
	Events                []store.JournalEvent
	Older                 int64
	Periods               [][2]string
}

const journalPage = 50

func (c *Console) journal(w http.ResponseWriter, r *http.Request, s *session) {
	d := journalData{
		Q: strings.TrimSpace(r.FormValue("q")), User: strings.TrimSpace(r.FormValue("user")),
		Event: r.FormValue("event"), Since: r.FormValue("since"), Events: store.JournalEvents,
		Periods: [][2]string{{"", "any time"}, {"1h", "last hour"}, {"24h", "last 24 hours"}, {"168h", "last 7 days"}, {"720h", "last 30 days"}},
	}
	q := store.JournalQuery{Text: d.Q, User: d.User, Limit: journalPage}
	var errMsg string
	if d.Event != "" {
		if !slices.Contains(store.JournalEvents, store.JournalEvent(d.Event)) {
			errMsg = "Unknown event " + d.Event
		}
		q.Event = store.JournalEvent(d.Event)
	}
	if d.Since != "" {
		if dur, err := time.ParseDuration(d.Since); err == nil && dur > 0 {
			q.Since = c.opt.Now().Add(-dur)
		} else {
			errMsg = "Bad period " + d.Since
		}
	}
	if b, err := strconv.ParseInt(r.FormValue("before"), 10, 64); err == nil && b > 0 {
		q.BeforeID = b
	}
	if errMsg == "" {
		var err error
		if d.Entries, err = journal.Search(r.Context(), c.st, q); err != nil {
			c.serverError(w, r, s, err)
			return
		}
		if len(d.Entries) >= journalPage {
			d.Older = d.Entries[len(d.Entries)-1].ID
		}
	}
	status := http.StatusOK
	if errMsg != "" {
		status = http.StatusBadRequest
	}
	c.render(w, r, status, "journal", s, page{Title: "Mail journal", Nav: "journal", Error: errMsg, Data: d})
}
