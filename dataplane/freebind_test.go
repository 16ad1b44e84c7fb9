package dataplane

import (
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"
)

// TestVXLANListensBeforeItsPAIsUp binds a VXLAN socket to a PA the
// namespace does not have yet, then adds the PA, and checks that a datagram
// sent to it arrives on that socket.
func TestVXLANListensBeforeItsPAIsUp(t *testing.T) {
	needRoot(t)
	for _, fam := range []struct{ name, pa, from, plen string }{
		{"IPv4", "198.18.0.9", "127.0.0.1", "/32"},
		{"IPv6", "fd00:198:18::9", "::1", "/128"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			name := "wdpfb" + suffix()
			ns := newNamedNS(t, name)
			inNS(t, ns, func() error {
				pa, from := netip.MustParseAddr(fam.pa), netip.MustParseAddr(fam.from)
				s, err := ListenVXLAN(pa, 0)
				if err != nil {
					return fmt.Errorf("ListenVXLAN on %s before it is up: %w", pa, err)
				}
				defer s.Close()
				if out, err := exec.Command("ip", "-n", name, "addr", "add", fam.pa+fam.plen, "dev", "lo", "nodad").CombinedOutput(); err != nil {
					return fmt.Errorf("adding %s: %v: %s", pa, err, out)
				}
				send, err := SendVXLAN(from, 0)
				if err != nil {
					return err
				}
				defer send.Close()
				got := make(chan Packet, 1)
				go func() {
					pkts := []Packet{{Buf: make([]byte, 2048)}}
					if n, err := s.ReadBatch(pkts); err == nil && n == 1 {
						got <- pkts[0]
					}
				}()
				msg := []byte("\x08\x00\x00\x00\x00\x13\x89\x00frame")
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				deadline := time.After(5 * time.Second)
				for {
					if _, err := send.WriteBatch([]Packet{{Buf: msg, N: len(msg), Dst: pa}}); err != nil {
						return err
					}
					select {
					case p := <-got:
						if string(p.Buf[:p.N]) != string(msg) {
							return fmt.Errorf("got %q", p.Buf[:p.N])
						}
						return nil
					case <-tick.C:
					case <-deadline:
						return fmt.Errorf("nothing arrived on the socket bound to %s before it was up", pa)
					}
				}
			})
		})
	}
}
