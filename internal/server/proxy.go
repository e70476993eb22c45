package server

import (
	"context"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/proxyproto"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// Every listener of a service carries its PROXY protocol policy, so that
// a reload can switch the PROXY protocol on or off, or change the trusted
// proxies, without closing the listening socket. With proxy_protocol
// false connections pass through untouched.

// proxyPolicy is the PROXY protocol policy of the service under cfg.
func (svc *service) proxyPolicy(cfg config.Config) *proxyproto.Policy {
	if svc.limits == nil {
		return &proxyproto.Policy{}
	}
	s := svc.limits(cfg)
	// Validated with the configuration.
	trusted, _ := proxyproto.ParsePrefixes(s.ProxyTrusted)
	return &proxyproto.Policy{Enabled: s.ProxyProtocol, Trusted: trusted}
}

// setProxy applies cfg's policy to a listener, for the connections it
// accepts from now on.
func (svc *service) setProxy(bl *boundListener, cfg config.Config) {
	bl.proxy.Store(svc.proxyPolicy(cfg))
}

// instances is what a store shared by several nodes tells about the
// processes holding their names.
type instances interface {
	Instance() string
	Instances(ctx context.Context) ([]store.Instance, error)
}

// clusterStatus adds the store, the node and the instances to a status.
func (s *Server) clusterStatus(ctx context.Context, cfg config.Config, st *control.Status) {
	st.Store, st.Node = cfg.Store.Backend, cfg.Store.NodeName
	is, ok := s.st.(instances)
	if !ok {
		return
	}
	st.Instance = is.Instance()
	all, err := is.Instances(ctx)
	if err != nil {
		s.log.Warn("status: listing the node instances", "err", err)
		return
	}
	for _, i := range all {
		st.Instances = append(st.Instances, control.Instance{Node: i.Node, Instance: i.Instance, Host: i.Host, PID: i.PID,
			Started: i.Started, Renewed: i.Renewed, LeaseUntil: i.Expires, Alive: i.Alive})
	}
}
