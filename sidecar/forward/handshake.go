package forward

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

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
// It checks the server's digest too, so that a server that does not know the key cannot pose as
// the aggregator. User authentication (a non-empty "auth" salt) is not supported.
func (c *Client) handshake(cn *conn, key []byte) error {
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
	if auth, _ := bytesOf(opts["auth"]); len(auth) > 0 {
		return &authError{"the server requires user authentication (username and password), which sidelog does not support: configure only a shared key on it"}
	}
	if keepalive, ok := opts["keepalive"].(bool); ok && !keepalive {
		c.log.Warn("the upstream server closes the connection after each message (keepalive off): every batch costs a new connection", "server", cn.addr)
	}

	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("making a salt: %w", err)
	}
	salt := hex.EncodeToString(raw[:])
	host := c.opts.hostname
	ping := []any{"PING", host, salt, digest(salt, host, nonce, key), "", ""}
	b, err := msgpack.AppendValue(nil, ping)
	if err != nil {
		return err
	}
	if _, err := cn.Write(b); err != nil {
		return fmt.Errorf("sending PING: %w", err)
	}

	v, err = cn.r.Decode()
	if err != nil {
		return fmt.Errorf("waiting for the server's PONG: %w", err)
	}
	pong, ok := v.([]any)
	if !ok || len(pong) != 5 || pong[0] != "PONG" {
		return fmt.Errorf("want the server's PONG, got %.100v", v)
	}
	if accepted, _ := pong[1].(bool); !accepted {
		reason, _ := bytesOf(pong[2])
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
	want := digest(salt, string(serverHost), nonce, key)
	if subtle.ConstantTimeCompare(theirs, []byte(want)) != 1 {
		return &authError{"the server's PONG digest does not match the shared key: it does not know the key of upstream.sharedKeyFile"}
	}
	return nil
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
