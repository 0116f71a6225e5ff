package stageopt

import (
	"errors"
	"fmt"
	"strings"
)

// Users creates groups and user accounts in the image with the image's own
// shadow tools, and installs SSH keys.
type Users struct {
	Groups []GroupSpec `json:"groups,omitempty"`
	Users  []UserSpec  `json:"users,omitempty"`
}

func init() { register[Users]("users") }

// GroupSpec is one group.
type GroupSpec struct {
	Name string `json:"name"`
	GID  *int   `json:"gid,omitempty"`
}

// UserSpec is one account. Password is a crypt(3) hash.
type UserSpec struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Password    string   `json:"password,omitempty"`
	Keys        []string `json:"keys,omitempty"`
	Home        string   `json:"home,omitempty"`
	Shell       string   `json:"shell,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	UID         *int     `json:"uid,omitempty"`
	GID         *int     `json:"gid,omitempty"`
}

// Validate checks the options.
func (u *Users) Validate() error {
	var errs []error
	for i, us := range u.Users {
		if us.Name == "" || strings.ContainsAny(us.Name, ":/ \n") {
			errs = append(errs, fmt.Errorf("users[%d].name: %q is not a user name", i, us.Name))
		}
		if strings.ContainsAny(us.Password, ": \n") {
			errs = append(errs, fmt.Errorf("users[%d].password: not a crypt(3) hash", i))
		}
		if strings.ContainsAny(us.Description, ":\n") {
			errs = append(errs, fmt.Errorf("users[%d].description: must not contain ':' or newlines", i))
		}
	}
	for i, g := range u.Groups {
		if g.Name == "" || strings.ContainsAny(g.Name, ":/ \n") {
			errs = append(errs, fmt.Errorf("groups[%d].name: %q is not a group name", i, g.Name))
		}
	}
	return errors.Join(errs...)
}
