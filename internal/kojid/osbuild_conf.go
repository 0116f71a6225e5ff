package kojid

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// BuilderConf is what koji-osbuild's builder.conf configures: the compose
// service (remote mode) and the hub named in compose requests.
type BuilderConf struct {
	Composer   ComposerConfig
	KojiServer string
}

// ParseBuilderConf reads koji-osbuild's builder.conf (an INI file as
// Python's configparser reads it): [composer] server, ssl_cert ("cert" or
// "cert, key"), ssl_verify (a boolean or a CA bundle path) and proxy;
// [composer:oauth] client_id, client_secret and token_url; [koji] server.
// Unknown sections and keys are refused, so a typo does not silently
// change how kojid authenticates.
func ParseBuilderConf(r io.Reader) (*BuilderConf, error) {
	conf := &BuilderConf{Composer: ComposerConfig{Server: "https://localhost"}, KojiServer: "https://localhost/kojihub"}
	allowed := map[string][]string{
		"composer":       {"server", "ssl_cert", "ssl_verify", "proxy"},
		"composer:oauth": {"client_id", "client_secret", "token_url"},
		"koji":           {"server"},
	}
	vals := map[string]map[string]string{}
	section, lastKey := "", ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if lastKey == "" {
				return nil, fmt.Errorf("builder.conf line %d: continuation line without a key", n)
			}
			vals[section][lastKey] += "\n" + line
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("builder.conf line %d: section header %q has no closing ]", n, line)
			}
			section, lastKey = line[1:len(line)-1], ""
			if _, ok := allowed[section]; !ok {
				return nil, fmt.Errorf("builder.conf line %d: unknown section [%s] (known: composer, composer:oauth, koji)", n, section)
			}
			if vals[section] == nil {
				vals[section] = map[string]string{}
			}
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("builder.conf line %d: want key = value, got %q", n, line)
		}
		if section == "" {
			return nil, fmt.Errorf("builder.conf line %d: key outside a section", n)
		}
		key := strings.ToLower(strings.TrimSpace(line[:i]))
		known := false
		for _, k := range allowed[section] {
			known = known || k == key
		}
		if !known {
			return nil, fmt.Errorf("builder.conf line %d: unknown key %q in [%s] (known: %s)", n, key, section, strings.Join(allowed[section], ", "))
		}
		vals[section][key] = strings.TrimSpace(line[i+1:])
		lastKey = key
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading builder.conf: %w", err)
	}
	c := vals["composer"]
	if v := c["server"]; v != "" {
		conf.Composer.Server = v
	}
	if v, ok := c["ssl_cert"]; ok {
		parts := strings.Split(v, ",")
		if len(parts) > 2 {
			return nil, fmt.Errorf("builder.conf [composer] ssl_cert: invalid cert string %q (%d certs)", v, len(parts))
		}
		conf.Composer.CertFile = strings.TrimSpace(parts[0])
		if len(parts) == 2 {
			conf.Composer.KeyFile = strings.TrimSpace(parts[1])
		}
	}
	if v, ok := c["ssl_verify"]; ok {
		switch strings.ToLower(v) {
		case "1", "yes", "true", "on":
		case "0", "no", "false", "off":
			conf.Composer.Insecure = true
		default:
			conf.Composer.CAFile = v
		}
	}
	conf.Composer.Proxy = c["proxy"]
	if o, ok := vals["composer:oauth"]; ok {
		for _, k := range allowed["composer:oauth"] {
			if o[k] == "" {
				return nil, fmt.Errorf("builder.conf [composer:oauth] %s: required", k)
			}
		}
		conf.Composer.OAuth = &OAuthConfig{ClientID: o["client_id"], ClientSecret: o["client_secret"], TokenURL: o["token_url"]}
	}
	if v := vals["koji"]["server"]; v != "" {
		conf.KojiServer = v
	}
	return conf, nil
}
