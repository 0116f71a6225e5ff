package kojitest

import (
	"fmt"
	"strconv"

	"github.com/kib-project/kib/internal/koji"
)

type method func(c *call) (any, error)

var methods map[string]method

func init() {
	methods = map[string]method{
		"getAPIVersion":  func(c *call) (any, error) { return int64(1), c.arity(0, 0) },
		"getKojiVersion": func(c *call) (any, error) { return Version, c.arity(0, 0) },
		"echo":           func(c *call) (any, error) { return c.args, nil },
		"login":          (*call).passwordLogin,
		"sslLogin":       (*call).sslLogin,
		"logout":         (*call).logout,
		"exclusiveSession": func(c *call) (any, error) {
			if _, err := c.user(); err != nil {
				return nil, err
			}
			if c.sess.master != 0 {
				return nil, generic("subsessions cannot become exclusive")
			}
			if c.sess.exclusive {
				return nil, generic("session is already exclusive")
			}
			force, _ := c.opt(0, "force").(bool)
			for _, o := range c.h.sessions {
				if o != c.sess && o.user == c.sess.user && o.exclusive && !o.closed {
					if !force {
						return nil, &koji.Fault{Code: koji.CodeAuthLock, String: "Cannot get exclusive session"}
					}
					o.closed, o.expired = true, true
				}
			}
			c.sess.exclusive = true
			c.commit = true
			return nil, nil
		},
		"sharedSession": func(c *call) (any, error) {
			if _, err := c.user(); err != nil {
				return nil, err
			}
			c.sess.exclusive = false
			c.commit = true
			return nil, nil
		},
		"subsession": func(c *call) (any, error) {
			if _, err := c.user(); err != nil {
				return nil, err
			}
			master := c.sess.master
			if master == 0 {
				master = c.sess.id
			}
			s := &session{id: c.h.nextSession, key: newKey(c.sess.user.ID), user: c.sess.user, master: master, authtype: c.sess.authtype, start: c.h.now()}
			c.h.nextSession++
			c.h.sessions[s.id] = s
			c.commit = true
			return map[string]any{"session-id": s.id, "session-key": s.key}, nil
		},
		"logoutChild": func(c *call) (any, error) {
			if c.sess == nil {
				return nil, authError("Not logged in")
			}
			id, err := c.integer(0, "session_id")
			if err != nil {
				return nil, err
			}
			if o := c.h.sessions[int64(id)]; o != nil && o.master == c.sess.id {
				o.closed, o.expired, o.exclusive = true, true, false
			}
			c.commit = true
			return nil, nil
		},
		"getLoggedInUser": func(c *call) (any, error) {
			if c.sess == nil {
				return nil, nil
			}
			u := c.sess.user
			ut := 0
			if u.Host {
				ut = 1
			}
			return map[string]any{"id": u.ID, "name": u.Name, "status": 0, "usertype": ut, "authtype": c.sess.authtype, "krb_principal": nilIfEmpty(u.Principal), "krb_principals": []any{}}, nil
		},
		"getSessionInfo": func(c *call) (any, error) {
			if c.sess == nil {
				return nil, nil
			}
			s := c.sess
			var cn any
			if s.callnum != nil {
				cn = *s.callnum
			}
			var master any
			if s.master != 0 {
				master = s.master
			}
			return map[string]any{"authtype": s.authtype, "callnum": cn, "exclusive": nilIfFalse(s.exclusive), "expired": s.expired, "master": master, "user_id": s.user.ID, "start_ts": float64(s.start.Unix())}, nil
		},
		"checkUpload":        (*call).checkUpload,
		"CGInitBuild":        (*call).cgInitBuild,
		"CGImport":           (*call).cgImport,
		"CGRefundBuild":      (*call).cgRefundBuild,
		"getBuild":           (*call).getBuild,
		"cancelBuild":        (*call).cancelBuild,
		"getImageBuild":      (*call).getImageBuild,
		"listArchives":       (*call).listArchives,
		"getBuildLogs":       (*call).getBuildLogs,
		"getNextRelease":     (*call).getNextRelease,
		"getBuildTarget":     (*call).getBuildTarget,
		"getBuildConfig":     (*call).getBuildConfig,
		"getTag":             (*call).getTag,
		"getRepo":            (*call).getRepo,
		"getTaskInfo":        (*call).getTaskInfo,
		"getTaskResult":      (*call).getTaskResult,
		"listTaskOutput":     (*call).listTaskOutput,
		"downloadTaskOutput": (*call).downloadTaskOutput,
		"tagBuild":           (*call).userTagBuild,
		"cancelTask":         (*call).cancelTask,
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nilIfFalse(b bool) any {
	if !b {
		return nil
	}
	return true
}

func (c *call) passwordLogin() (any, error) {
	if err := c.arity(2, 3); err != nil {
		return nil, err
	}
	name, _ := c.args[0].(string)
	pw, _ := c.args[1].(string)
	u := c.h.userByName[name]
	if u == nil || pw == "" || u.Password != pw {
		return nil, authError("invalid username or password")
	}
	return c.login(u, 0)
}

func (c *call) logout() (any, error) {
	if c.sess == nil {
		return nil, authError("Not logged in")
	}
	c.sess.closed, c.sess.expired = true, true
	for _, o := range c.h.sessions {
		if o.master == c.sess.id {
			o.closed, o.expired = true, true
		}
	}
	c.commit = true
	return nil, nil
}

// arity checks the number of positional plus keyword arguments, like
// Koji's ParameterError.
func (c *call) arity(minArgs, maxArgs int) error {
	n := len(c.args)
	if n < minArgs || (maxArgs >= 0 && n > maxArgs) {
		return paramError("wrong number of arguments: %d given, %d to %d accepted", n, minArgs, maxArgs)
	}
	return nil
}

// opt returns positional argument i, or keyword name, or nil.
func (c *call) opt(i int, name string) any {
	if i < len(c.args) {
		return c.args[i]
	}
	if v, ok := c.kw[name]; ok {
		return v
	}
	return nil
}

func (c *call) str(i int, name string) (string, error) {
	v := c.opt(i, name)
	s, ok := v.(string)
	if !ok {
		return "", paramError("%s must be a string, not %T", name, v)
	}
	return s, nil
}

func (c *call) integer(i int, name string) (int, error) {
	return toInt(c.opt(i, name), name)
}

func toInt(v any, name string) (int, error) {
	switch x := v.(type) {
	case int64:
		return int(x), nil
	case string:
		n, err := strconv.Atoi(x)
		if err == nil {
			return n, nil
		}
	case float64:
		return int(x), nil
	}
	return 0, paramError("%s must be an integer, not %v", name, v)
}

func errNoSuch(kind string, v any) error {
	return generic("No such %s: %v", kind, v)
}

func fmtNVR(name, version, release string) string {
	return fmt.Sprintf("%s-%s-%s", name, version, release)
}
