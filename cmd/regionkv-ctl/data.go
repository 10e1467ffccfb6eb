package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/regionkv/regionkv/kv/client"
)

// pairJSON is a key-value pair in -w json output, encoded as chosen.
type pairJSON struct {
	Key   string  `json:"key"`
	Value *string `json:"value,omitempty"`
}

func (a *app) dataCommands() []*cobra.Command {
	put := &cobra.Command{
		Use:   "put <key> <value>",
		Short: "Set a key to a value",
		Args:  nArgs(2, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			key, err := a.enc.decode("key", args[0])
			if err != nil {
				return err
			}
			value, err := a.enc.decode("value", args[1])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Put(a.ctx, key, value); err != nil {
				return err
			}
			return a.ok()
		},
	}
	get := &cobra.Command{
		Use:   "get <key>",
		Short: "Print the value of a key (exit code 3 if it does not exist)",
		Args:  nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			key, err := a.enc.decode("key", args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			value, err := c.Get(a.ctx, key)
			if errors.Is(err, client.ErrNotFound) {
				return notFoundf("key %q not found", a.enc.encode(key))
			}
			if err != nil {
				return err
			}
			if a.json() {
				v := a.enc.encode(value)
				return a.printJSON(pairJSON{Key: a.enc.encode(key), Value: &v})
			}
			_, err = fmt.Fprintln(a.stdout, a.enc.encode(value))
			return err
		},
	}
	del := &cobra.Command{
		Use:   "delete <key>",
		Short: "Delete a key (deleting a missing key succeeds)",
		Args:  nArgs(1, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			key, err := a.enc.decode("key", args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Delete(a.ctx, key); err != nil {
				return err
			}
			return a.ok()
		},
	}
	var (
		limit    int
		reverse  bool
		keysOnly bool
	)
	scan := &cobra.Command{
		Use:   "scan [start] [end]",
		Short: "List the pairs with keys in [start, end), across regions",
		Long: `List up to --limit pairs with keys in [start, end), in ascending order, or
descending with --reverse. An omitted or empty start or end is unbounded.`,
		Args: nArgs(0, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			var bounds [2][]byte
			for i, s := range args {
				b, err := a.enc.decode([]string{"start", "end"}[i], s)
				if err != nil {
					return err
				}
				bounds[i] = b
			}
			if limit <= 0 {
				return usagef("--limit must be positive")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var opts []client.ScanOption
			if keysOnly {
				opts = append(opts, client.KeyOnly())
			}
			var kvs []client.KvPair
			if reverse {
				kvs, err = c.ReverseScan(a.ctx, bounds[1], bounds[0], limit, opts...)
			} else {
				kvs, err = c.Scan(a.ctx, bounds[0], bounds[1], limit, opts...)
			}
			if err != nil {
				return err
			}
			return a.printPairs(kvs, keysOnly)
		},
	}
	scan.Flags().IntVar(&limit, "limit", 100, "the most pairs to list")
	scan.Flags().BoolVar(&reverse, "reverse", false, "descending order")
	scan.Flags().BoolVar(&keysOnly, "keys-only", false, "list keys only")
	delRange := &cobra.Command{
		Use:   "delete-range <start> <end>",
		Short: "Delete every key in [start, end); an empty end means to the last key",
		Long: `Delete every key in [start, end). An empty end ("") means no upper bound.
The range is deleted region by region: each region's part atomically, the
whole not.`,
		Args: nArgs(2, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			start, err := a.enc.decode("start", args[0])
			if err != nil {
				return err
			}
			end, err := a.enc.decode("end", args[1])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteRange(a.ctx, start, end); err != nil {
				return err
			}
			return a.ok()
		},
	}
	return []*cobra.Command{put, get, del, scan, delRange}
}

// ok reports a successful write.
func (a *app) ok() error {
	if a.json() {
		return a.printJSON(map[string]bool{"ok": true})
	}
	_, err := fmt.Fprintln(a.stdout, "OK")
	return err
}

func (a *app) printPairs(kvs []client.KvPair, keysOnly bool) error {
	if a.json() {
		out := struct {
			Count int        `json:"count"`
			Kvs   []pairJSON `json:"kvs"`
		}{Count: len(kvs), Kvs: []pairJSON{}}
		for _, p := range kvs {
			pj := pairJSON{Key: a.enc.encode(p.Key)}
			if !keysOnly {
				v := a.enc.encode(p.Value)
				pj.Value = &v
			}
			out.Kvs = append(out.Kvs, pj)
		}
		return a.printJSON(out)
	}
	header := []string{"KEY", "VALUE"}
	if keysOnly {
		header = header[:1]
	}
	rows := make([][]string, len(kvs))
	for i, p := range kvs {
		rows[i] = []string{a.enc.encode(p.Key)}
		if !keysOnly {
			rows[i] = append(rows[i], a.enc.encode(p.Value))
		}
	}
	return a.table(header, rows)
}
