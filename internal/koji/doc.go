// Package koji is kib's client for a Koji hub, behaving like Koji 1.35's own
// Python client: an XML-RPC codec for Koji's dialect (nil, i8, __starstar
// keyword arguments), faults as typed errors, sessions (password, client
// certificate, GSSAPI) sent in Koji-Session-* headers with callnum
// discipline, retries that re-send the same body, multicall, raw chunked
// uploads with adler32 verification, and typed Content Generator and build
// host calls. It knows nothing about images; see package kojimeta for the
// metadata of an image build.
package koji
