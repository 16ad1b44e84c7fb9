package probe

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// flakyResponder answers probes as "before" until switchAt, drops them until
// resumeAt, then answers as "after": a VM that moves to another host.
func flakyResponder(t *testing.T, switchAt, resumeAt time.Time) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			name := "before"
			switch now := time.Now(); {
			case now.After(resumeAt):
				name = "after"
			case now.After(switchAt):
				continue
			}
			pc.WriteTo([]byte(strings.TrimRight(string(buf[:n]), "\n")+" "+name+"\n"), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestStreamMeasuresLossAndBlackout(t *testing.T) {
	start := time.Now()
	to := flakyResponder(t, start.Add(200*time.Millisecond), start.Add(300*time.Millisecond))
	r, err := Stream(context.Background(), to, StreamOptions{Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sent, lost := len(r.Echoes), r.Lost()
	if sent != 501 {
		t.Errorf("sent %d probes in 500 ms at 1 kHz, want about 500", sent)
	}
	if lost < 50 || lost > 110 {
		t.Errorf("lost %d probes during a 100 ms outage at 1 kHz, want about 100", lost)
	}
	if b := r.Blackout().Len(); b < 95*time.Millisecond || b > 200*time.Millisecond {
		t.Errorf("blackout %v for a 100 ms outage, want about 100 ms", b)
	}
	if got := r.Responders(); !slices.Equal(got, []string{"before", "after"}) {
		t.Errorf("responders %v, want [before after]", got)
	}
	for i, e := range r.Echoes {
		if e.Seq != i || (e.Answered() && e.At.Before(e.Sent)) {
			t.Fatalf("echo %d = %+v: want seq %d answered after it was sent", i, e, i)
		}
	}
}

func TestStreamWithoutAnswersIsOneBlackout(t *testing.T) {
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(freePort(t)))
	r, err := Stream(context.Background(), to, StreamOptions{Duration: 100 * time.Millisecond, Linger: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Lost() != len(r.Echoes) || len(r.Echoes) == 0 {
		t.Errorf("lost %d of %d, want all", r.Lost(), len(r.Echoes))
	}
	if b := r.Blackout().Len(); b < 80*time.Millisecond {
		t.Errorf("blackout %v, want the whole stream (~100 ms)", b)
	}
}

func TestStreamEndsWhenStopped(t *testing.T) {
	// A responder that stops the stream once it has answered 20 probes.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	stop := make(chan struct{})
	go func() {
		buf := make([]byte, 2048)
		for n := 1; ; n++ {
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(strings.TrimRight(string(buf[:m]), "\n")+" r\n"), from)
			if n == 20 {
				close(stop)
			}
		}
	}()
	to := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	r, err := Stream(context.Background(), to, StreamOptions{Duration: time.Minute, Stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.Echoes); n < 20 || n >= 60000 {
		t.Fatalf("sent %d probes, want the stream cut short by Stop after 20 answers", n)
	}
}
