package forward

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/sidelog/sidelog/sidecar/msgpack"
)

// authError is a refusal in the shared-key handshake, as opposed to a network failure: it is
// logged as an error because retrying will not fix it.
type authError struct{ msg string }

func (e *authError) Error() string { return e.msg }

// handshake authenticates on cn with the shared key, as the forward protocol v1 says:
//
//	server: ["HELO", {"nonce": nonce, "auth": user_auth_salt, "keepalive": bool}]
//	client: ["PING", hostname, salt, sha512_hex(salt + hostname + nonce + key), username, password_digest]
//	server: ["PONG", ok, reason, server_hostname, sha512_hex(salt + server_hostname + nonce + key)]
//
// password_digest is sha512_hex(user_auth_salt + username + password). A non-empty auth salt
// does not mean the server has users: Fluent Bit's in_forward sends one always, and checks a
// user only when it has some. So without a user the client answers with an empty username and
// password, as Fluent Bit's out_forward does, and lets the PONG decide; Fluentd, which sends an
// empty salt when it has no users, ignores them.
//
// It checks the server's digest too, so that a server that does not know the key cannot pose as
// the aggregator.
func (c *Client) handshake(cn *conn, cr *credentials) error {
	v, err := cn.r.Decode()
	if err != nil {
		return fmt.Errorf("waiting for the server's HELO (is shared-key authentication enabled on the server?): %w", err)
	}
	helo, ok := v.([]any)
	if !ok || len(helo) != 2 || helo[0] != "HELO" {
		return fmt.Errorf("want the server's HELO, got %.100v", v)
	}
	opts, ok := helo[1].(map[string]any)
	if !ok {
		return fmt.Errorf("HELO options are %.100v, want a map", helo[1])
	}
	nonce, ok := bytesOf(opts["nonce"])
	if !ok || len(nonce) == 0 {
		return fmt.Errorf("HELO has no nonce: %.100v", opts)
	}
	userSalt, _ := bytesOf(opts["auth"])
	if keepalive, ok := opts["keepalive"].(bool); ok && !keepalive {
		c.log.Warn("the upstream server closes the connection after each message (keepalive off): every batch costs a new connection", "server", cn.addr)
	}

	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("making a salt: %w", err)
	}
	salt := hex.EncodeToString(raw[:])
	host := c.opts.hostname
	var username, password string
	if cr.username != nil {
		username = string(cr.username)
		password = passwordDigest(userSalt, cr.username, cr.password)
	}
	ping := []any{"PING", host, salt, digest(salt, host, nonce, cr.sharedKey), username, password}
	b, err := msgpack.AppendValue(nil, ping)
	if err != nil {
		return err
	}
	if _, err := cn.Write(b); err != nil {
		return fmt.Errorf("sending PING: %w", err)
	}

	v, err = cn.r.Decode()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			// Fluent Bit answers a wrong shared key by closing the connection, without a PONG.
			return &authError{"the server closed the connection after the PING without answering: it refused the shared key of upstream.sharedKeyFile (Fluent Bit logs \"shared_key mismatch\")"}
		}
		return fmt.Errorf("waiting for the server's PONG: %w", err)
	}
	pong, ok := v.([]any)
	if !ok || len(pong) != 5 || pong[0] != "PONG" {
		return fmt.Errorf("want the server's PONG, got %.100v", v)
	}
	if accepted, _ := pong[1].(bool); !accepted {
		reason, _ := bytesOf(pong[2])
		if len(userSalt) > 0 {
			who := "without a user (set upstream.usernameFile and upstream.passwordFile)"
			if cr.username != nil {
				who = fmt.Sprintf("as user %q of upstream.usernameFile and upstream.passwordFile", cr.username)
			}
			return &authError{fmt.Sprintf("the server refused the handshake %s: %q", who, reason)}
		}
		return &authError{fmt.Sprintf("the server refused the shared key of upstream.sharedKeyFile: %q", reason)}
	}
	serverHost, ok1 := bytesOf(pong[3])
	theirs, ok2 := bytesOf(pong[4])
	if !ok1 || !ok2 {
		return fmt.Errorf("malformed PONG: %.100v", v)
	}
	if string(serverHost) == host {
		return &authError{fmt.Sprintf("the server has the client's own hostname %q: the protocol forbids it (is the agent sending to itself?)", host)}
	}
	want := digest(salt, string(serverHost), nonce, cr.sharedKey)
	if subtle.ConstantTimeCompare(theirs, []byte(want)) != 1 {
		return &authError{"the server's PONG digest does not match the shared key: it does not know the key of upstream.sharedKeyFile"}
	}
	return nil
}

// passwordDigest is sha512_hex(user_auth_salt + username + password).
func passwordDigest(salt, username, password []byte) string {
	h := sha512.New()
	h.Write(salt)
	h.Write(username)
	h.Write(password)
	return hex.EncodeToString(h.Sum(nil))
}

// digest is sha512_hex(salt + hostname + nonce + key).
func digest(salt, hostname string, nonce, key []byte) string {
	h := sha512.New()
	h.Write([]byte(salt))
	h.Write([]byte(hostname))
	h.Write(nonce)
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil))
}

// bytesOf returns the bytes of a str or bin value.
func bytesOf(v any) ([]byte, bool) {
	switch v := v.(type) {
	case string:
		return []byte(v), true
	case []byte:
		return v, true
	}
	return nil, false
}
