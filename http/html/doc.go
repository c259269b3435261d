// Package html holds the two faces people see: the customer's preference
// center (/portal) and the staff's admin console (/admin). It owns the
// templates, the style sheet, the user-facing texts (texts/en.json, the one
// place to translate) and the charts, drawn as inline SVG on the server so
// every page works without JavaScript.
//
// It renders what it is given and nothing else: it must never read storage,
// decide what a reader may see (package http and the services do that before
// a page is rendered), or put personal data anywhere but the page body of the
// person entitled to it (no URLs, titles or logs).
package html
