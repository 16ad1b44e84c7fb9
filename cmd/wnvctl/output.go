package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// requestTimeout bounds one call to wnvd, so a wedged daemon cannot hang a
// script forever.
const requestTimeout = 30 * time.Second

// outTable is what a command prints with -o table; with -o json or yaml it
// prints the API's own JSON of v instead, or that JSON as YAML.
type outTable struct {
	header []string
	rows   [][]string
}

func (t *outTable) add(cells ...string) { t.rows = append(t.rows, cells) }

// printResult prints v as indented JSON or YAML with -o json or yaml, else
// the tables.
func printResult(cmd *cobra.Command, v any, tables ...outTable) error {
	w := cmd.OutOrStdout()
	if structured() {
		return encode(w, v, false)
	}
	for i, t := range tables {
		if i > 0 {
			fmt.Fprintln(w)
		}
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		for _, r := range t.rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// structured reports whether -o asks for JSON or YAML rather than a table.
func structured() bool { return flagOutput != "table" }

// encode writes v in the -o format: JSON, indented unless v is one of a
// stream's values (one JSON object a line), or YAML made from that JSON, so
// that both show the API's names and values (a stream's values are YAML
// documents, each after ---).
func encode(w io.Writer, v any, streamed bool) error {
	if flagOutput == "yaml" {
		j, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return err
		}
		if streamed {
			y = append([]byte("---\n"), y...)
		}
		_, err = w.Write(y)
		return err
	}
	enc := json.NewEncoder(w)
	if !streamed {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}

// Cell formatters: "-" stands for an unset value so columns stay aligned.

func addrCell(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

func prefixCell(p netip.Prefix) string {
	if !p.IsValid() {
		return "-"
	}
	return p.String()
}

func macCell(m packet.MAC) string {
	if m.IsZero() {
		return "-"
	}
	return m.String()
}

func guidCell(g policy.GUID) string {
	if g.IsZero() {
		return "-"
	}
	return g.String()
}

func strCell(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func numCell[T ~uint8 | ~uint16 | ~uint32 | ~uint64](n T) string {
	return strconv.FormatUint(uint64(n), 10)
}
