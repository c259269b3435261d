// Package demo loads a realistic demo workspace into a running Trustloop, so a
// newcomer sees a living system in one command (`trustloop serve --demo`,
// issue 7): twenty customers made from twenty real OTTO shopping sessions,
// browsing on one to three devices each, signing in so their devices join,
// with varied consent (banner choices, Global Privacy Control, no choice at
// all, later withdrawals and a renewal) and a few privacy requests.
//
// It owns the mapping of the sessions to Segment e-commerce events (Build: a
// pure function of the data, a fixed seed and the time "now") and the client
// that sends them (Load). It is a client and nothing more: everything goes
// through the server's public HTTP API with the keys it is given, exactly as a
// business's site and back office would send it, so the demo exercises the
// same paths as production traffic.
//
// It must never reach into storage or server internals, invent data about
// real people (names are made up, every email is at example.com), put an
// identifier in a log line or an error (customers are named by their index),
// or send anything it cannot send again: every messageId is derived from the
// session and the event's index, so a second load stores nothing twice.
//
// Data: data/sessions.jsonl is a sample of the OTTO Recommender Systems
// Dataset (https://github.com/otto-de/recsys-dataset), © Otto (GmbH & Co KG),
// released under the Creative Commons Attribution 4.0 licence (CC-BY 4.0,
// https://creativecommons.org/licenses/by/4.0/). data/README.md is its
// attribution and must ship with it. The demo changes the data: it shifts the
// sessions' times into the last 28 days, and adds made-up customers, devices,
// prices, categories and consent around the real product ids and rhythm.
package demo
