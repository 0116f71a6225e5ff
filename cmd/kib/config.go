package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// configTables are the tables kib.toml may have, one per command that reads
// it.
var configTables = []string{"serve", "worker", "kojid", "upload", "artifacts"}

// applyConfigFile sets every flag that was not given on the command line
// from the TOML table [section] of path; keys are the flag names with "_"
// for "-". Unknown keys, unknown tables (a misspelled [serv]) and keys
// outside a table are errors, so typos do not go unnoticed.
func applyConfigFile(cmd *cobra.Command, path, section string) error {
	if path == "" {
		return nil
	}
	var doc map[string]any
	if _, err := toml.DecodeFile(path, &doc); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	for _, name := range slices.Sorted(maps.Keys(doc)) {
		if _, isTable := doc[name].(map[string]any); !isTable {
			return fmt.Errorf("--config %s: %s: a setting outside a table; put it under [%s]", path, name, strings.Join(configTables, "] or ["))
		}
		if !slices.Contains(configTables, name) {
			return fmt.Errorf("--config %s: [%s]: unknown table (kib.toml has %s)", path, name, "["+strings.Join(configTables, "], [")+"]")
		}
	}
	table, ok := doc[section].(map[string]any)
	if !ok {
		if _, present := doc[section]; present {
			return fmt.Errorf("--config %s: [%s] must be a table", path, section)
		}
		return nil
	}
	flags := cmd.Flags()
	// A sub-table ([kojid.composer]) sets the flags named with its prefix
	// (server → --composer-server).
	for key, v := range table {
		sub, ok := v.(map[string]any)
		if !ok {
			continue
		}
		delete(table, key)
		for k, sv := range sub {
			if _, nested := sv.(map[string]any); nested {
				return fmt.Errorf("--config %s: [%s.%s] %s: unknown setting", path, section, key, k)
			}
			table[key+"_"+k] = sv
		}
	}
	for key, v := range table {
		name := strings.ReplaceAll(key, "_", "-")
		f := flags.Lookup(name)
		if f == nil || name == "config" {
			return fmt.Errorf("--config %s: [%s] %s: unknown setting", path, section, key)
		}
		if f.Changed {
			continue
		}
		if err := setFlag(f, v); err != nil {
			return fmt.Errorf("--config %s: [%s] %s: %w", path, section, key, err)
		}
	}
	return nil
}

func setFlag(f *pflag.Flag, v any) error {
	switch x := v.(type) {
	case []any:
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			list := make([]string, 0, len(x))
			for _, e := range x {
				list = append(list, fmt.Sprint(e))
			}
			return sv.Replace(list)
		}
		return fmt.Errorf("a list is not allowed here")
	default:
		return f.Value.Set(fmt.Sprint(x))
	}
}
