// Package keyring owns Trustloop's keys and the cryptography over personal data:
// the master key (KEK), per-subject data keys (DEKs) wrapped by it, AES-256-GCM
// sealing of payloads, and HMAC-SHA256 blind indexes of identifiers.
//
// It must never write a plaintext key or identifier anywhere but memory, never log
// one, and never decide policy (who may read, what is kept): it only seals, opens,
// wraps and indexes.
package keyring
