import Testing

/// The integration tests: the real `switchyard` binary, real backends and real clients
/// (curl, wrk, raw sockets) on 127.0.0.1. They run one at a time because several measure
/// time or memory, or load both cores.
@Suite(.serialized) enum Integration {}
