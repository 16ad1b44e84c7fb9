package main

import "strconv"

// veth builds the machine's limit: the two VMs' eth0 are the two ends of
// one veth pair, with no host, bridge or tunnel between them. The hosts
// that base made stay idle. The VMs get the same MTU as in the other
// setups, so that every setup's TCP segments carry the same payload.
func (b *bed) veth() error {
	vmMTU := strconv.Itoa(b.o.mtu - 50)
	cmds := [][]string{
		{"link", "add", "wbl" + b.id, "netns", b.vm(0), "type", "veth", "peer", "name", "wbl" + b.id + "p", "netns", b.vm(1)},
		{"-n", b.vm(0), "link", "set", "wbl" + b.id, "name", "eth0"},
		{"-n", b.vm(1), "link", "set", "wbl" + b.id + "p", "name", "eth0"},
	}
	for i := range 2 {
		cmds = append(cmds,
			[]string{"-n", b.vm(i), "link", "set", "eth0", "address", mac[i].String(), "mtu", vmMTU, "up"},
			[]string{"-n", b.vm(i), "addr", "add", ca[i].String() + "/24", "dev", "eth0"})
	}
	return each(cmds)
}
