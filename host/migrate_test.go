package host

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/policy"
)

// TestForwardKeepsTheSendersSource sends what the old host of a migrated VM
// forwards, from an address of another host, and checks that the new host's
// socket receives it with that outer source and the payload intact.
func TestForwardKeepsTheSendersSource(t *testing.T) {
	needRoot(t)
	for _, fam := range []struct{ name, old, dst, sender string }{
		{"IPv4", "198.18.0.2/24", "198.18.0.3/24", "198.18.0.1"},
		{"IPv6", "fd00:47::2/64", "fd00:47::3/64", "fd00:47::1"},
	} {
		for _, encap := range []policy.Encapsulation{policy.EncapNVGRE, policy.EncapVXLAN} {
			t.Run(fam.name+" "+encap.String(), func(t *testing.T) {
				s := suffix()
				oldNS, newNS := "wmfo"+s, "wmfn"+s
				netnsAdd(t, oldNS)
				netnsAdd(t, newNS)
				run(t, "ip", "link", "add", "wmf0"+s, "netns", oldNS, "type", "veth", "peer", "name", "wmf1"+s, "netns", newNS)
				for _, x := range []struct{ ns, dev, addr string }{{oldNS, "wmf0" + s, fam.old}, {newNS, "wmf1" + s, fam.dst}} {
					run(t, "ip", "-n", x.ns, "addr", "add", x.addr, "dev", x.dev, "nodad")
					run(t, "ip", "-n", x.ns, "link", "set", x.dev, "up")
				}
				dst := netip.MustParsePrefix(fam.dst).Addr()
				var sock interface {
					ReadBatch([]dataplane.Packet) (int, error)
					Close() error
				}
				if err := inNetns(newNS, func() (err error) {
					if encap == policy.EncapVXLAN {
						sock, err = dataplane.ListenVXLAN(dst, 0)
					} else {
						sock, err = dataplane.ListenGRE(dst, 0)
					}
					return err
				}); err != nil {
					t.Fatal(err)
				}
				defer sock.Close()

				payload := append([]byte{0x08, 0, 0, 0, 0, 0x13, 0x89, 0}, bytes.Repeat([]byte{0xab}, 200)...)
				sender := netip.MustParseAddr(fam.sender)
				pkts := []dataplane.Packet{{Buf: make([]byte, 2048)}}
				type read struct {
					n   int
					err error
				}
				got := make(chan read, 1)
				go func() {
					n, err := sock.ReadBatch(pkts)
					got <- read{n, err}
				}()
				// The first send can go before the new namespace's veth has a
				// carrier or answered neighbour discovery: send until one arrives.
				var m migrations
				defer m.closeRaw()
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				deadline := time.After(10 * time.Second)
				var r read
			wait:
				for {
					if err := inNetns(oldNS, func() error { return m.sendRaw(sender, dst, payload, encap, 0, 0) }); err != nil {
						t.Fatal(err)
					}
					select {
					case r = <-got:
						break wait
					case <-tick.C:
					case <-deadline:
						sock.Close()
						r = <-got
						break wait
					}
				}
				if r.err != nil || r.n != 1 {
					t.Fatalf("nothing received at the new PA: %d, %v", r.n, r.err)
				}
				if p := pkts[0]; p.Src != sender || !bytes.Equal(p.Buf[:p.N], payload) {
					t.Errorf("received %d bytes from %s, want the %d bytes forwarded from %s", p.N, p.Src, len(payload), sender)
				}
			})
		}
	}
}
