// Package password hashes and verifies the admin console's operator
// passwords: argon2id (golang.org/x/crypto/argon2) with OWASP's parameters,
// stored as PHC strings ($argon2id$v=19$m=19456,t=2,p=1$salt$hash), compared
// in constant time, and the length rule new passwords must meet (Check).
//
// It owns the password format and its parameters. It must never log, store or
// put in an error a password, and never accept a hash string it cannot fully
// parse (a malformed or tampered hash is an error, not a "wrong password").
package password
