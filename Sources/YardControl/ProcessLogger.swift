import Logging
import YardIO

/// This module's process logger: swift-log's `Logger` with Switchyard's handler
/// (`SwitchyardLogHandler`: text or JSON lines), the one `switchyard run` bootstrapped.
/// Read on every call, so a line logged before the bootstrap (tests, client commands)
/// still goes through the same handler. Control plane only: the data plane logs through
/// the `Log` facade (docs/ARCHITECTURE.md).
var logger: Logger { Log.logger }
