package server

import (
	"context"
	"net"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/proxyproto"
)

// Every listener of a service goes through a proxyproto.Listener, so that
// a reload can switch the PROXY protocol on or off, or change the trusted
// proxies, without closing the listening socket. With proxy_protocol
// false it passes connections through untouched.

// proxyPolicy is the PROXY protocol policy of the service under cfg.
func (svc *service) proxyPolicy(cfg config.Config) proxyproto.Policy {
	if svc.limits == nil {
		return proxyproto.Policy{}
	}
	s := svc.limits(cfg)
	// Validated with the configuration.
	trusted, _ := proxyproto.ParsePrefixes(s.ProxyTrusted)
	return proxyproto.Policy{Enabled: s.ProxyProtocol, Trusted: trusted}
}

// withProxy wraps a newly bound listener.
func (svc *service) withProxy(l net.Listener, cfg config.Config) net.Listener {
	return proxyproto.NewListener(l, svc.proxyPolicy(cfg), svc.srv.log.With("service", svc.name))
}

// setProxy applies cfg's policy to a listener kept across a reload.
func (svc *service) setProxy(l net.Listener, cfg config.Config) {
	if pl, ok := l.(*proxyproto.Listener); ok {
		pl.SetPolicy(svc.proxyPolicy(cfg))
	}
}

// liveNodes is what a store shared by several nodes tells about them.
type liveNodes interface {
	LiveNodes(ctx context.Context) ([]string, error)
}

// clusterStatus adds the store and node to a status.
func (s *Server) clusterStatus(ctx context.Context, cfg config.Config, st *control.Status) {
	st.Store, st.Node = cfg.Store.Backend, cfg.Store.NodeName
	if ln, ok := s.st.(liveNodes); ok {
		if nodes, err := ln.LiveNodes(ctx); err == nil {
			st.Nodes = nodes
		}
	}
}
