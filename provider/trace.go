package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/vswitch"
)

// TraceRequest asks a host what its switch does with one packet: either one
// the VM on Port sends (Destination and the other packet fields), or one
// arriving from the underlay (Outer, as another host's trace returned it).
type TraceRequest struct {
	Port        string     `json:"Port,omitempty"`
	Source      netip.Addr `json:"Source,omitzero"` // default: the port's first CA of Destination's family
	Destination netip.Addr `json:"Destination,omitzero"`
	// Protocol is tcp, udp or icmp (an echo request; ICMPv6 for IPv6).
	Protocol        string `json:"Protocol,omitempty"`
	SourcePort      uint16 `json:"SourcePort,omitempty"`
	DestinationPort uint16 `json:"DestinationPort,omitempty"`
	TTL             uint8  `json:"TTL,omitempty"`
	// Length is the IP packet's; 0 for a minimal one.
	Length int `json:"Length,omitempty"`
	// DestinationMAC is the frame's; zero: the VM resolves its next hop
	// with ARP or ND first, and that is traced too.
	DestinationMAC packet.MAC `json:"DestinationMAC,omitzero"`

	Outer *vswitch.Outer `json:"Outer,omitempty"`
}

// Protocols a trace can build packets of.
var traceProtocols = map[string]uint8{"tcp": packet.ProtoTCP, "udp": packet.ProtoUDP, "icmp": packet.ProtoICMP}

// Validate checks r as far as it can without the host's ports.
func (r *TraceRequest) Validate() error {
	if r.Outer != nil {
		if r.Port != "" || r.Destination.IsValid() {
			return errors.New("Outer traces a packet from the underlay: give it without Port and Destination")
		}
		if !r.Outer.Src.IsValid() || !r.Outer.Dst.IsValid() || r.Outer.Src.Is4() != r.Outer.Dst.Is4() {
			return fmt.Errorf("Outer has Src %s and Dst %s: both must be provider addresses of one family", r.Outer.Src, r.Outer.Dst)
		}
		if len(r.Outer.Payload) < vswitch.EncapHeaderLen+packet.EthernetHeaderLen || len(r.Outer.Payload) > 9216 {
			return fmt.Errorf("Outer Payload has %d bytes: give the NVGRE or VXLAN header and the inner frame (or, Rewritten, the frame), %d..9216 bytes", len(r.Outer.Payload), vswitch.EncapHeaderLen+packet.EthernetHeaderLen)
		}
		return nil
	}
	if r.Port == "" {
		return errors.New("Port is missing: name the port the VM sends on, or give Outer for a packet from the underlay")
	}
	if !r.Destination.IsValid() {
		return errors.New("Destination is missing: give the customer address the packet is for")
	}
	if r.Source.IsValid() && r.Source.Is4() != r.Destination.Is4() {
		return fmt.Errorf("Source %s and Destination %s are of different families: use one family", r.Source, r.Destination)
	}
	if _, ok := r.proto(); !ok {
		return fmt.Errorf("Protocol %q is not supported: use tcp, udp or icmp", r.Protocol)
	}
	if p, _ := r.proto(); (r.SourcePort != 0 || r.DestinationPort != 0) && p != packet.ProtoTCP && p != packet.ProtoUDP {
		return fmt.Errorf("SourcePort and DestinationPort need Protocol tcp or udp, not %q", r.Protocol)
	}
	if r.Length < 0 || r.Length > 9000 {
		return fmt.Errorf("Length %d is out of range: use 0 (minimal) up to 9000 bytes", r.Length)
	}
	return nil
}

// proto is the IP protocol number of r.Protocol (default udp).
func (r *TraceRequest) proto() (uint8, bool) {
	p, ok := traceProtocols[strings.ToLower(cmp.Or(r.Protocol, "udp"))]
	if ok && p == packet.ProtoICMP && r.Destination.Is6() {
		p = packet.ProtoICMPv6
	}
	return p, ok
}

// Frame is the packet r describes, from port p.
func (r *TraceRequest) Frame(p vswitch.PortConfig) (vswitch.TraceFrame, error) {
	src := r.Source
	if !src.IsValid() {
		for _, ca := range p.CAs {
			if ca.Is4() == r.Destination.Is4() {
				src = ca
				break
			}
		}
		if !src.IsValid() {
			return vswitch.TraceFrame{}, fmt.Errorf("port %q has no customer address of %s's family: give Source", p.Name, r.Destination)
		}
	}
	proto, _ := r.proto()
	sport := r.SourcePort
	if sport == 0 && (proto == packet.ProtoTCP || proto == packet.ProtoUDP) {
		sport = 40000
	}
	return vswitch.TraceFrame{SrcMAC: p.MAC, DstMAC: r.DestinationMAC, Src: src, Dst: r.Destination, Proto: proto,
		SrcPort: sport, DstPort: r.DestinationPort, TTL: r.TTL, Len: r.Length}, nil
}

// TraceResponse is a host's account of a traced packet.
type TraceResponse struct {
	Host string `json:"Host"`
	// Resolve is the trace of the VM's ARP or ND request for its next
	// hop, if the request left DestinationMAC out.
	Resolve *vswitch.TraceResult `json:"Resolve,omitempty"`
	// Packet is the packet's trace; nil if Resolve got no answer.
	Packet *vswitch.TraceResult `json:"Packet,omitempty"`
	// Installed says whether the kernel fast path holds the packet's
	// decision now (the flow's later packets do not reach the slow path).
	Installed bool `json:"Installed"`
	// Injected is set for a live trace: the marked probe went into the
	// slow path at the port with this verdict.
	Injected string `json:"Injected,omitempty"`
	Mark     string `json:"Mark,omitempty"`
}

// Tracer is a Backend that traces packets: POST /v1/trace is a dry run,
// which changes nothing (observers may ask for it); POST /v1/trace/live
// also injects the packet, marked, at the port into the slow path and
// forwards it for real.
type Tracer interface {
	Trace(r TraceRequest, live bool) (TraceResponse, error)
}

// TracePath is the dry-run trace's path, the one POST an observer may make.
const TracePath = "/v1/trace"

func registerTrace(h *handler) {
	for _, live := range []bool{false, true} {
		path := TracePath
		if live {
			path += "/live"
		}
		h.route(path, map[string]http.HandlerFunc{http.MethodPost: func(w http.ResponseWriter, r *http.Request) {
			tr, ok := h.b.(Tracer)
			if !ok {
				jsonapi.WriteError(w, jsonapi.Invalid(errors.New("this wnvd does not trace packets")))
				return
			}
			var req TraceRequest
			if err := jsonapi.DecodeBody(r.Body, &req); err != nil {
				jsonapi.WriteError(w, err)
				return
			}
			if err := req.Validate(); err != nil {
				jsonapi.WriteError(w, jsonapi.Invalid(err))
				return
			}
			if live && req.Outer != nil {
				jsonapi.WriteError(w, jsonapi.Invalid(errors.New("a live trace injects at a port: give Port, not Outer")))
				return
			}
			res, err := tr.Trace(req, live)
			if err != nil {
				jsonapi.WriteError(w, err)
				return
			}
			jsonapi.WriteJSON(w, http.StatusOK, res)
		}})
	}
}

// Trace asks the host what its switch does with the packet of r; live also
// sends it.
func (c *Client) Trace(ctx context.Context, r TraceRequest, live bool) (TraceResponse, error) {
	path := TracePath
	if live {
		path += "/live"
	}
	var out TraceResponse
	err := c.do(ctx, http.MethodPost, path, nil, r, &out)
	return out, err
}

// TracePort is the pure part of a Backend's Trace for a packet from a
// port: the switch's dry run of it on sw's current snapshots. It returns
// the port and the packet's frame too, with mark in its payload.
func TracePort(sw *vswitch.Switch, r TraceRequest, mark []byte) (TraceResponse, *vswitch.PortConfig, []byte, error) {
	var p *vswitch.PortConfig
	for _, pc := range sw.Ports().Ports() {
		if pc.Name == r.Port {
			p = &pc
			break
		}
	}
	if p == nil {
		return TraceResponse{}, nil, nil, &policy.Error{Kind: policy.ErrNotFound, Msg: fmt.Sprintf("port %q is not attached: list ports with GET /v1/ports", r.Port)}
	}
	f, err := r.Frame(*p)
	if err != nil {
		return TraceResponse{}, nil, nil, jsonapi.Invalid(err)
	}
	f.Mark = mark
	resolve, pkt, frame, err := sw.TracePacket(p.Index, f)
	if err != nil {
		return TraceResponse{}, nil, nil, jsonapi.Invalid(err)
	}
	return TraceResponse{Resolve: resolve, Packet: pkt}, p, frame, nil
}

// TraceOuter is TracePort for a packet from the underlay.
func TraceOuter(sw *vswitch.Switch, o *vswitch.Outer) TraceResponse {
	if o.Rewritten {
		res := sw.TraceFromRewritten(o.Payload)
		return TraceResponse{Packet: &res}
	}
	res := sw.TraceFromUnderlay(o.Src, o.Dst, o.Encap, o.Payload)
	return TraceResponse{Packet: &res}
}
