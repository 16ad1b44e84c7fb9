package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"

	"github.com/wnv/wnv/policyapi"
)

// DashboardAddr is where the demo and `wnvctl lab dashboard` forward the
// policy server's port to, in the root namespace: the server itself lives
// on the lab's underlay, which the machine's browser cannot reach.
const DashboardAddr = "127.0.0.1:8443"

// Dashboard is the lab policy server's dashboard, forwarded to the root
// namespace.
type Dashboard struct {
	URL   string // https://127.0.0.1:PORT/ui/
	Token string // an observer token to log in with
	CA    string // the lab CA's certificate, for a browser to trust

	ln   net.Listener
	wg   sync.WaitGroup
	stop context.CancelFunc
}

// StartDashboard listens on addr (another free port of its address when
// addr's is taken), forwards every connection to the policy server, and
// issues an observer token named name.
func (l *Lab) StartDashboard(ctx context.Context, addr, name string) (*Dashboard, error) {
	if l.Topology.Static {
		return nil, errors.New("a static lab has no policy server, so no dashboard")
	}
	ic, err := l.Server().IssueCredential(ctx, policyapi.IssueRequest{Role: "observer", Name: name, Token: true})
	if err != nil {
		return nil, fmt.Errorf("observer token for the dashboard: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, _ := net.SplitHostPort(addr)
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			return nil, fmt.Errorf("dashboard listener: %w", err)
		}
	}
	fctx, stop := context.WithCancel(context.Background())
	d := &Dashboard{URL: "https://" + ln.Addr().String() + "/ui/", Token: ic.Token,
		CA: filepath.Join(l.AdminCredentials(), "ca.pem"), ln: ln, stop: stop}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		l.forward(fctx, ln)
	}()
	return d, nil
}

// Close stops forwarding and closes the connections it carries.
func (d *Dashboard) Close() {
	d.stop()
	d.ln.Close()
	d.wg.Wait()
}

// forward splices each connection accepted on ln to the policy server
// until ctx ends.
func (l *Lab) forward(ctx context.Context, ln net.Listener) {
	dial := NamespaceDialer(l.Topology.Namespace("underlay"))
	server := l.Topology.ServerURL()[len("https://"):]
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			s, err := dial(ctx, "tcp", server)
			if err != nil {
				return
			}
			defer s.Close()
			// Either side ending, or the dashboard closing, ends both.
			done := make(chan struct{}, 2)
			go func() { io.Copy(s, c); done <- struct{}{} }()
			go func() { io.Copy(c, s); done <- struct{}{} }()
			select {
			case <-done:
			case <-ctx.Done():
			}
		}()
	}
}
